"""L2 recovery: time from Redis answering again after an outage to L2 hits resuming.

A real redis-server (no persistence) serves WORKERS concurrent loops, each reading its key
through the L2 tier (`RedisTier`) and writing it back when missing, one request per
REQUEST_INTERVAL. The server is stopped for OUTAGES seconds and started again (empty); the
figure is the time from its first answer (a PING on a connection of the bench's own) to
the first hit of any loop, REPEATS times per outage (median and worst). Baseline, same run and
load, alternating with the tier: a bare redis-py client with no outage handling, whose every
call tries Redis (the fastest a client can notice the return; on a busy machine it shows how
long the loops themselves take to notice). Goal: the tier's hits resume within 2 s of Redis
answering.

Run: `python -m bench.bench_l2_recovery` (needs redis-server: `scripts/system-deps`).
"""

import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis import Redis as SyncRedis
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from tests.engine.conftest import REDIS_BINARY, RedisServer

from novel_engine.cache.l2 import RedisTier

WORKERS = 64
REQUEST_INTERVAL = 0.005
OUTAGES = (5.0, 8.0)
REPEATS = 3
WARM_UP_SECONDS = 1.0
GIVE_UP_SECONDS = 60.0
GOAL_SECONDS = 2.0
VALUE = b"x" * 2_000

Get = Callable[[str], Awaitable[bytes | None]]
Set = Callable[[str, bytes], Awaitable[None]]


async def recovery_seconds(server: RedisServer, get: Get, put: Set, outage: float) -> float:
    """Restart `server` under load after `outage` seconds; seconds from its first answer to the
    first hit (GIVE_UP_SECONDS if none came)."""
    answered: list[float] = []
    first_hit: list[float] = []
    hit_again = asyncio.Event()
    stop = asyncio.Event()

    async def worker(number: int) -> None:
        key = f"bench:{number}"
        while not stop.is_set():
            if await get(key) is None:
                await put(key, VALUE)
            elif answered and not first_hit:
                first_hit.append(time.monotonic())
                hit_again.set()
            await asyncio.sleep(REQUEST_INTERVAL)

    workers = [asyncio.create_task(worker(number)) for number in range(WORKERS)]
    try:
        await asyncio.sleep(WARM_UP_SECONDS)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(outage)
        await asyncio.to_thread(restart, server)
        answered.append(time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hit_again.wait(), GIVE_UP_SECONDS)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    return first_hit[0] - answered[0] if first_hit else GIVE_UP_SECONDS


def restart(server: RedisServer) -> None:
    """Start the server and return once it answers a PING (a connection of its own)."""
    server.start()
    client = SyncRedis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                client.ping()
                return
            except (redis_errors.RedisError, OSError):
                time.sleep(0.001)
    finally:
        client.close()


async def with_tier(server: RedisServer, outage: float) -> float:
    tier = RedisTier(server.url)
    try:
        return await recovery_seconds(server, tier.get, tier.set, outage)
    finally:
        await tier.close()


async def with_bare_client(server: RedisServer, outage: float) -> float:
    client = Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)

    async def get(key: str) -> bytes | None:
        try:
            value = await client.get(key)
        except (redis_errors.RedisError, OSError):
            return None
        return value if isinstance(value, bytes) else None

    async def put(key: str, value: bytes) -> None:
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await client.set(key, value)

    try:
        return await recovery_seconds(server, get, put, outage)
    finally:
        await client.aclose()


def main() -> None:
    if REDIS_BINARY is None:
        print("bench_l2_recovery: skipped, redis-server is not installed (scripts/system-deps)")
        return
    print(
        f"bench_l2_recovery: Redis answering again -> first L2 hit, {WORKERS} concurrent"
        f" loops (one request each per {REQUEST_INTERVAL * 1000:.0f} ms)"
    )
    logging.getLogger("novel_engine.cache.l2").setLevel(logging.CRITICAL)  # outages on purpose
    with tempfile.TemporaryDirectory(prefix="bench-l2-") as directory:
        server = RedisServer(REDIS_BINARY, Path(directory))
        server.start()
        try:
            for outage in OUTAGES:
                tier, bare = [], []
                for _ in range(REPEATS):
                    tier.append(asyncio.run(with_tier(server, outage)))
                    bare.append(asyncio.run(with_bare_client(server, outage)))
                verdict = "meets" if max(tier) < GOAL_SECONDS else "misses"
                extra = statistics.median(t - b for t, b in zip(tier, bare, strict=True))
                print(
                    f"  {outage:.0f} s outage: L2 tier median {statistics.median(tier):.3f} s"
                    f" worst {max(tier):.3f} s; bare redis-py client median"
                    f" {statistics.median(bare):.3f} s worst {max(bare):.3f} s; the tier takes"
                    f" {extra:+.3f} s more (median of the repeats); {verdict} the"
                    f" {GOAL_SECONDS:.0f} s goal"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
