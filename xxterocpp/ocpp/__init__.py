"""
The OCPP-J side: message schemas, the RPC framing and the WebSocket server.
"""
