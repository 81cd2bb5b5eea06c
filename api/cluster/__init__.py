"""What every process of an install shares through Redis (``MARK1_REDIS_URL``).

``store.ClusterStore`` holds the connection, its health and the Lua scripts;
``sockets.SocketSlots`` counts sockets per subject across processes;
``figures`` sums the counters ``systemMetrics`` reports. The mutation token
bucket is in api/ratelimit.py. Without Redis, or while it does not answer,
each of them works per process.
"""
