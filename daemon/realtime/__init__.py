"""Realtime: the Phoenix channel client of the cloud, presence and broadcast.

Pure cores (no I/O, no clock): ``frames`` (vsn 1.0.0 codec and the events), ``states`` (channel
transitions), ``phoenix`` (``PhoenixClient``), ``presence`` (roster, idleness, track coalescing),
``channels`` (the workspace channel's topic and join payload), ``tokens`` (when to refresh).
The only adapter is ``connection`` (``RealtimeConnection``, over the websockets library).
Nothing is imported here, so importing a pure module never pulls in asyncio or websockets.
"""
