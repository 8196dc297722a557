"""
The KNX side: group addresses (C{address}), datapoint types (C{dpt}), the
group objects' declaration (C{objects}), the knxd client (C{knxd}) and the
bridge between the bus and the domain (C{bridge}, C{points}) with what it
last sent and received (C{journal}).
"""
