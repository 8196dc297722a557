"""
The KNX side: group addresses, datapoint types and the knxd client.
"""
