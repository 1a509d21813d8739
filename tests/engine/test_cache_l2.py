"""The Redis tier talks to a real redis-server and turns every failure into a counted miss."""

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from novel_engine.cache.l2 import RedisTier

from .conftest import RedisServer, free_port

pytestmark = pytest.mark.redis


async def test_set_get_delete_with_prefix_and_ttl(redis_server: RedisServer) -> None:
    tier = RedisTier(redis_server.url, key_prefix="t:", ttl_seconds=60)
    direct = Redis.from_url(redis_server.url)
    try:
        assert await tier.get("k") is None
        await tier.set("k", b"\x00bytes")
        assert await tier.get("k") == b"\x00bytes"
        assert await direct.get("t:k") == b"\x00bytes"
        assert 0 < await direct.pttl("t:k") <= 60_000
        await tier.delete("k")
        assert await tier.get("k") is None
        assert (tier.stats.hits, tier.stats.misses, tier.stats.errors) == (1, 2, 0)
    finally:
        await tier.close()
        await direct.aclose()


async def test_password_is_used(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(password="s3cret")
    good = RedisTier(server.url, "s3cret")
    bad = RedisTier(server.url, "wrong")
    try:
        await good.set("k", b"v")
        assert await good.get("k") == b"v"
        assert await bad.get("k") is None
        assert bad.stats.errors == 1
        assert bad.stats.misses == 0
    finally:
        await good.close()
        await bad.close()


async def test_outage_is_counted_backed_off_and_recovered(redis_server: RedisServer) -> None:
    tier = RedisTier(redis_server.url, backoff_initial=0.2, backoff_max=0.4)
    try:
        await tier.set("k", b"v")
        await asyncio.to_thread(redis_server.stop)

        assert await tier.get("k") is None  # refused: counted, tier paused
        assert not tier.available
        await tier.set("k", b"v")  # skipped while paused, still counted
        assert tier.stats.errors == 2

        await asyncio.to_thread(redis_server.start)  # empty again: persistence is off
        for _ in range(100):
            await tier.set("k", b"back")
            if await tier.get("k") == b"back":
                break
            await asyncio.sleep(0.05)
        assert await tier.get("k") == b"back"
        assert tier.available
    finally:
        await tier.close()


async def test_unreachable_server_never_raises() -> None:
    tier = RedisTier(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert await tier.get("k") is None
        await tier.set("k", b"v")
        await tier.delete("k")
        assert tier.stats.errors == 3
    finally:
        await tier.close()
