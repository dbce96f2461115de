"""The local API: one WebSocket (JSON-RPC 2.0) that every editor UI attaches to.

``server.BridgeServer`` serves it, ``client.connect`` talks to it, ``cli_commands`` backs
``syncd call``; ``methods`` holds the method table (dispatch and ``rpc.discover`` alike).
"""
