"""Read-through caching over L1, L2 and L3: promotion, single flight, invalidation, outages."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from novel_engine.cache import MIGRATIONS, L1Cache, SqliteTier, TieredCache, build_cache
from novel_engine.cache.l2 import RedisTier
from novel_engine.config import Settings
from novel_engine.db import Database
from novel_engine.metrics import EngineMetrics

from .conftest import RedisServer


def new_l1() -> L1Cache:
    return L1Cache(max_entries=100, max_bytes=100_000, ttl_seconds=60)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(
        tmp_path / "engine.db", size=2, acquire_timeout=1.0, metrics=None, migrations=MIGRATIONS
    )
    yield database
    await database.close()


class Counting:
    """A compute function that records its calls and can be held open."""

    def __init__(self, value: bytes = b"computed") -> None:
        self.calls = 0
        self.value = value
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> bytes:
        self.calls += 1
        await self.release.wait()
        return self.value


async def test_l3_hit_is_promoted_to_l1(db: Database) -> None:
    l3 = SqliteTier(db)
    cache = TieredCache(new_l1(), None, l3)
    await l3.set("k", b"from-l3")
    assert cache.l1.get("k") is None
    assert await cache.get("k") == b"from-l3"
    assert cache.l1.get("k") == b"from-l3"
    assert l3.stats.hits == 1


async def test_get_or_compute_stores_in_every_tier(db: Database) -> None:
    cache = TieredCache(new_l1(), None, SqliteTier(db))
    compute = Counting()
    assert await cache.get_or_compute("k", compute) == b"computed"
    assert await cache.get_or_compute("k", compute) == b"computed"
    assert compute.calls == 1
    cache.l1.clear()
    assert await cache.get_or_compute("k", compute) == b"computed"  # from L3
    assert compute.calls == 1


async def test_concurrent_callers_share_one_computation() -> None:
    cache = TieredCache(new_l1())
    compute = Counting()
    compute.release.clear()
    waiters = [asyncio.create_task(cache.get_or_compute("k", compute)) for _ in range(10)]
    await asyncio.sleep(0.01)
    waiters[0].cancel()  # one caller giving up does not stop the others' result
    compute.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [b"computed"] * 9
    assert compute.calls == 1


async def test_failed_computation_reaches_every_caller_and_is_not_cached() -> None:
    cache = TieredCache(new_l1())

    async def broken() -> bytes:
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    results = await asyncio.gather(
        *(cache.get_or_compute("k", broken) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ValueError) for result in results)
    assert await cache.get_or_compute("k", Counting(b"fine")) == b"fine"


async def test_delete_during_computation_keeps_stale_result_out(db: Database) -> None:
    cache = TieredCache(new_l1(), None, SqliteTier(db))
    await cache.set("k", b"old")
    await cache.delete("k")
    assert await cache.get("k") is None

    compute = Counting(b"stale")
    compute.release.clear()
    loading = asyncio.create_task(cache.get_or_compute("k", compute))
    await asyncio.sleep(0.01)
    await cache.delete("k")  # content changed while computing
    compute.release.set()
    assert await loading == b"stale"  # the caller that asked still gets an answer
    assert await cache.get("k") is None
    assert await cache.get_or_compute("k", Counting(b"fresh")) == b"fresh"


@pytest.mark.redis
async def test_l3_hit_is_promoted_to_l2_and_l2_hit_to_l1(
    db: Database, redis_server: RedisServer
) -> None:
    l2 = RedisTier(redis_server.url)
    l3 = SqliteTier(db)
    cache = TieredCache(new_l1(), l2, l3)
    try:
        await l3.set("k", b"v")
        assert await cache.get("k") == b"v"
        assert await l2.get("k") == b"v"
        cache.l1.clear()
        await l3.delete("k")
        assert await cache.get("k") == b"v"  # from L2
        assert cache.l1.get("k") == b"v"
    finally:
        await cache.close()


@pytest.mark.redis
async def test_redis_outage_keeps_serving_from_l1_and_l3(
    db: Database, redis_server: RedisServer
) -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    l2 = RedisTier(redis_server.url)
    cache = TieredCache(new_l1(), l2, SqliteTier(db))
    for stats in (cache.l1.stats, l2.stats):
        metrics.track_cache(stats)
    direct = Redis.from_url(redis_server.url)
    try:
        await cache.set("before", b"1")
        await asyncio.to_thread(redis_server.stop)

        cache.l1.clear()
        assert await cache.get("before") == b"1"  # from L3
        assert await cache.get_or_compute("during", Counting(b"2")) == b"2"
        assert await cache.get("during") == b"2"  # from L1
        errors = {"tier": "l2", "result": "error"}
        assert (registry.get_sample_value("novel_engine_cache_requests_total", errors) or 0) >= 1

        await asyncio.to_thread(redis_server.start)
        await direct.set("novel-engine:cache:after", b"3")  # only L2 has it
        for _ in range(100):
            if await cache.get("after") == b"3":
                break
            await asyncio.sleep(0.05)
        assert cache.l1.get("after") == b"3"
        assert l2.stats.hits >= 1
    finally:
        await cache.close()
        await direct.aclose()


async def test_build_cache_follows_settings_and_exports_counters(db: Database) -> None:
    registry = CollectorRegistry()
    settings = Settings(l1_max_entries=7, l1_max_bytes=1234, l1_ttl_seconds=9)
    cache = await build_cache(settings, db, EngineMetrics(registry))
    assert cache.l2 is None
    assert cache.l3 is not None
    assert (cache.l1.max_entries, cache.l1.max_bytes, cache.l1.ttl_seconds) == (7, 1234, 9)
    await cache.get("missing")
    sample = registry.get_sample_value
    assert sample("novel_engine_cache_requests_total", {"tier": "l1", "result": "miss"}) == 1
    assert sample("novel_engine_cache_requests_total", {"tier": "l3", "result": "miss"}) == 1
    # No Redis configured: no L2 series, which would read as an L2 that never failed.
    assert sample("novel_engine_cache_requests_total", {"tier": "l2", "result": "miss"}) is None
    default = await build_cache(Settings(), None, None)
    assert default.l1.max_bytes > 0
    without_l3 = await build_cache(Settings(l3_enabled=False), db, None)
    assert without_l3.l3 is None
