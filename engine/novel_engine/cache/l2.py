"""The shared cache tier in Redis: failures are counted and recovered from, never raised."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import exceptions as redis_errors

from novel_engine.config import ConfigError
from novel_engine.metrics import CacheStats, L2Health, L2State
from novel_engine.redis_client import redis_client
from novel_engine.throttled_log import ThrottledLog

_log = logging.getLogger(__name__)
T = TypeVar("T")

# Redis refused the credentials (wrong password, unknown user, or an ACL denying the commands).
_AUTH_ERRORS = (redis_errors.AuthenticationError, redis_errors.AuthorizationError)
# Redis is unreachable or unhealthy (refused, reset, timed out, still loading its data).
_OUTAGE_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
# Redis's answer to the SELECT of a database it does not have, sent on every new connection.
_NO_SUCH_DATABASE = "DB index is out of range"
_DESCRIPTIONS: dict[L2State, str] = {
    "unreachable": "Redis does not answer",
    "auth_failed": "Redis refuses the configured credentials",
}


class RedisTier:
    """get/set/delete against Redis under a key prefix.

    The tier is either up or in an outage. The first failed command starts the outage: from
    then on commands are skipped (each counts as an error) and one background probe PINGs
    Redis, first after probe_initial seconds, then at intervals doubling up to probe_max,
    until an answer ends the outage. Concurrent failures join the outage under way, and any
    success, a probe's or a command's in flight, ends it. `health.state` says which outage
    it is (unreachable or auth_failed); a change of state is logged once. A command Redis answers
    but refuses (a write to a Redis full under noeviction, or read-only) is no outage: it counts
    as an error, and each kind of such error (its class) is logged at most once a minute.

    Connections: at most max_connections at once (more callers wait for one, each holder
    being bounded by socket_timeout); idle ones are dropped when an outage starts, so none from
    before a Redis restart is used after it; one idle for health_check_interval is PINGed
    before use, and a command whose connection turns out dead is retried once on a new one.
    """

    def __init__(
        self,
        url: str,
        password: str | None = None,
        *,
        ttl_seconds: float = 86_400.0,
        key_prefix: str = "novel-engine:cache:",
        socket_timeout: float = 0.5,
        max_connections: int = 32,
        health_check_interval: float = 5.0,
        probe_initial: float = 0.1,
        probe_max: float = 0.5,
    ) -> None:
        self.stats = CacheStats("l2")
        self.health = L2Health()
        self.ttl_seconds = ttl_seconds
        self._prefix = key_prefix
        self._client = redis_client(
            url,
            password,
            socket_timeout=socket_timeout,
            max_connections=max_connections,
            health_check_interval=health_check_interval,
        )
        self._probe_initial = probe_initial
        self._probe_max = probe_max
        self._recovery: asyncio.Task[None] | None = None
        self._closed = False  # no more state changes, nor probes, once closing
        self._command_errors = ThrottledLog(_log)

    @property
    def available(self) -> bool:
        """False during an outage (commands are skipped until a probe succeeds)."""
        return self.health.state == "ok"

    async def check(self) -> None:
        """PING once at start and record the answer (not counted as a lookup); a failure
        starts an outage, and its probe. Raises ConfigError (the client closed) when Redis
        answers that it has no such database as the URL names: no wait cures that, and every
        command would fail."""
        try:
            await self._attempt(self._client.ping, no_database_is_fatal=True)
        except ConfigError:
            await self.close()
            raise

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
        self._closed = True
        recovery, self._recovery = self._recovery, None
        if recovery is not None:
            recovery.cancel()
            await asyncio.gather(recovery, return_exceptions=True)
        await self._client.aclose()

    async def _call(self, command: Callable[[], Awaitable[T]]) -> "T | _Failed":
        """Run one command; a failure is counted here and comes back as FAILED."""
        if not self.available:
            self.stats.errors += 1
            return FAILED
        outcome = await self._attempt(command)
        if isinstance(outcome, _Failed):
            self.stats.errors += 1
        return outcome

    async def _attempt(
        self, command: Callable[[], Awaitable[T]], *, no_database_is_fatal: bool = False
    ) -> "T | _Failed":
        """Run a command and move the state by its outcome."""
        try:
            result = await command()
        except _AUTH_ERRORS as exc:
            self._enter("auth_failed", exc)
            return FAILED
        except _OUTAGE_ERRORS as exc:
            self._enter("unreachable", exc)
            return FAILED
        except redis_errors.RedisError as exc:  # answered, but refused this one command
            if no_database_is_fatal and _NO_SUCH_DATABASE in str(exc):
                raise ConfigError(f"redis_url: Redis refuses the connection: {exc}") from None
            self._command_errors.warning(type(exc).__name__, "L2 cache command failed: %s", exc)
            return FAILED
        self._enter("ok", None)
        return result

    def _enter(self, state: L2State, cause: BaseException | None) -> None:
        if self._closed:  # (a command the close interrupted: no outage to report or probe)
            return
        previous, self.health.state = self.health.state, state
        if state == previous:
            return
        if state == "ok":
            _log.info("L2 cache reachable again")
            return
        # The exception text names host and port or Redis's refusal, never the password.
        _log.error("L2 cache %s: %s, serving from L1/L3 (%s)", state, _DESCRIPTIONS[state], cause)
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.get_running_loop().create_task(
                self._recover(), name="l2-cache-recovery"
            )

    async def _recover(self) -> None:
        """The outage's one probe: PING with growing pauses until Redis answers."""
        # Connections idle in the pool may predate a Redis restart: start the outage without them.
        await self._client.connection_pool.disconnect(inuse_connections=False)
        probe = asyncio.current_task()
        assert probe is not None  # the probe is always a task
        pause = self._probe_initial
        while not self.available:
            await asyncio.sleep(pause)
            if not self.available:  # else a command in flight succeeded meanwhile
                await self._attempt(self._client.ping)
            if probe.cancelling():
                # Cancelled during the PING, which redis-py can turn into a timeout error (an
                # outage, to _attempt): stop all the same, or close() waits for it forever.
                raise asyncio.CancelledError
            pause = min(pause * 2, self._probe_max)


class _Failed:
    """Result of a command that failed (already counted)."""


FAILED = _Failed()
