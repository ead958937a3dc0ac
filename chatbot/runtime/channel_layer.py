"""The Channels layer over Redis, with a connection pool that waits when it is full.

channels_redis builds redis-py's plain pool, which raises "Too many connections" the moment more
than `max_connections` (100 by default) calls are in flight. Every chat socket joins two groups
when it opens and leaves them when it closes, so 500 sockets opening or closing together crashed
in daphne (tests/benchmarks/bench_streams.py). A blocking pool makes the extra calls wait for a
connection instead, up to its `timeout`: Redis sees a bounded number of connections per process.
"""

from __future__ import annotations

from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from redis.asyncio import BlockingConnectionPool


class RedisChannelLayer(_RedisChannelLayer):
    """Hosts are given as {"address": url, ...}; other keys (max_connections, timeout: seconds a
    call waits for a free connection, socket_timeout) go to the pool."""

    def create_pool(self, index: int) -> Any:
        host = dict(self.hosts[index])
        return BlockingConnectionPool.from_url(host.pop("address"), **host)
