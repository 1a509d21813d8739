"""The Redis client every L2 user builds (the cache tier and the shared job store)."""

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def redis_client(
    url: str,
    password: str | None,
    *,
    socket_timeout: float,
    max_connections: int = 32,
    health_check_interval: float = 5.0,
    retries: int = 1,
) -> Redis:
    """A client on a bounded pool: at most max_connections at once (more callers wait, each
    holder bounded by socket_timeout); a connection idle for health_check_interval is PINGed
    before use, and a command whose connection turns out dead is retried `retries` times on a
    new one (0 for commands that must not run twice)."""
    pool = BlockingConnectionPool.from_url(
        url,
        password=password,
        max_connections=max_connections,
        timeout=None,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), retries),
    )
    return Redis.from_pool(pool)
