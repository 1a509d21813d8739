"""The shared cache tier in Redis: failures are counted and backed off, never raised."""

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from novel_engine.metrics import CacheStats

_log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors meaning "Redis is unreachable or unhealthy": they pause the tier for a backoff period.
_OUTAGE_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class RedisTier:
    """get/set/delete against Redis under a key prefix.

    After a connection failure the tier is skipped (each skipped call counts as an error)
    until a backoff period ends; the period doubles per failed retry up to backoff_max and
    resets after a success. redis-py's own retries are off, so a call fails fast instead.
    """

    def __init__(
        self,
        url: str,
        password: str | None = None,
        *,
        ttl_seconds: float = 86_400.0,
        key_prefix: str = "novel-engine:cache:",
        socket_timeout: float = 0.5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = CacheStats("l2")
        self.ttl_seconds = ttl_seconds
        self._prefix = key_prefix
        self._client = Redis.from_url(
            url,
            password=password,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = backoff_initial
        self._paused_until = 0.0
        self._failing = False
        self._clock = clock

    @property
    def available(self) -> bool:
        """False while the tier is paused after a failure."""
        return self._clock() >= self._paused_until

    async def get(self, key: str) -> bytes | None:
        value = await self._call(lambda: self._client.get(self._prefix + key))
        if isinstance(value, _Failed):
            return None
        if not isinstance(value, bytes):  # None: responses are never decoded to str here
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return value

    async def set(self, key: str, value: bytes) -> None:
        """Store value for ttl_seconds."""
        ttl_ms = max(1, int(self.ttl_seconds * 1000))
        await self._call(lambda: self._client.set(self._prefix + key, value, px=ttl_ms))

    async def delete(self, key: str) -> None:
        await self._call(lambda: self._client.delete(self._prefix + key))

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, command: Callable[[], Awaitable[T]]) -> "T | _Failed":
        """Run one command; a failure is counted here and comes back as FAILED."""
        if not self.available:
            self.stats.errors += 1
            return FAILED
        try:
            result = await command()
        except _OUTAGE_ERRORS as exc:
            self.stats.errors += 1
            self._pause(exc)
            return FAILED
        except redis_errors.RedisError as exc:
            self.stats.errors += 1
            _log.warning("L2 cache command failed: %s", exc)
            return FAILED
        if self._failing:
            _log.info("L2 cache reachable again")
            self._failing = False
            self._backoff = self._backoff_initial
        return result

    def _pause(self, exc: BaseException) -> None:
        if not self._failing:
            _log.warning("L2 cache unavailable, serving from L1/L3: %s", exc)
            self._failing = True
        self._paused_until = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)


class _Failed:
    """Result of a command that failed (already counted)."""


FAILED = _Failed()
