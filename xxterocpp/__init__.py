"""
xxterocpp: the OCPP 1.6J central system of a building-automation controller,
bridging every car charger to the KNX bus through knxd.
"""

__version__ = "0.1.0"
