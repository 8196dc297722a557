"""
The controller web status page and its HTTP API.
"""
