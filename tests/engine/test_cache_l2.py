"""The Redis tier talks to a real redis-server and turns every failure into a counted miss."""

import asyncio
import logging
from collections.abc import Callable

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from novel_engine.cache.l2 import RedisTier

from .api import until
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


async def test_wrong_password_is_an_auth_failure_until_redis_accepts_it(
    redis_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_factory(password="s3cret")
    good = RedisTier(server.url, "s3cret")
    bad = RedisTier(server.url, "wrong-pass")
    admin = Redis.from_url(server.url, password="s3cret")
    try:
        await good.set("k", b"v")
        assert await good.get("k") == b"v"
        await bad.check()
        assert bad.health.state == "auth_failed"
        assert await bad.get("k") is None
        assert await bad.get("k") is None
        assert (bad.stats.errors, bad.stats.misses) == (2, 0)
        failures = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failures) == 1  # once per state change, not once per command
        assert "auth_failed" in failures[0].getMessage()

        # The operator fixes the Redis side: the tier's probe notices without any command.
        await admin.config_set("requirepass", "wrong-pass")
        await until(lambda: bad.available)
        assert await bad.get("k") == b"v"
        assert "wrong-pass" not in caplog.text
        assert "s3cret" not in caplog.text
    finally:
        await good.close()
        await bad.close()
        await admin.aclose()


async def test_outage_is_counted_probed_and_recovered_without_traffic(
    redis_server: RedisServer,
) -> None:
    tier = RedisTier(redis_server.url)
    try:
        await tier.set("k", b"v")
        await asyncio.to_thread(redis_server.stop)

        assert await tier.get("k") is None  # refused: counted, outage started
        assert tier.health.state == "unreachable"
        await tier.set("k", b"v")  # skipped during the outage, still counted
        assert tier.stats.errors == 2

        await asyncio.to_thread(redis_server.start)  # empty again: persistence is off
        await until(lambda: tier.available)  # the probe found it; no command was needed
        await tier.set("k", b"back")
        assert await tier.get("k") == b"back"
        assert tier.stats.errors == 2
    finally:
        await tier.close()


async def test_restart_under_concurrent_load_is_one_outage_and_leaves_no_stale_connection(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novel_engine.cache.l2")
    tier = RedisTier(redis_server.url, max_connections=8)
    stop = asyncio.Event()

    async def worker(number: int) -> None:
        while not stop.is_set():
            await tier.set(f"k{number}", b"v")
            await tier.get(f"k{number}")
            await asyncio.sleep(0)

    workers = [asyncio.create_task(worker(n)) for n in range(40)]
    try:
        await until(lambda: tier.stats.hits > 200)
        await asyncio.to_thread(redis_server.stop)
        await until(lambda: tier.health.state == "unreachable")
        await asyncio.to_thread(redis_server.start)
        await until(lambda: tier.available)
        hits, errors = tier.stats.hits, tier.stats.errors
        await until(lambda: tier.stats.hits > hits + 2000)  # every connection used again
        assert tier.stats.errors == errors  # no connection from before the restart failed
    finally:
        stop.set()
        await asyncio.gather(*workers)
        await tier.close()
    changes = [r.getMessage() for r in caplog.records if r.name == "novel_engine.cache.l2"]
    assert len(changes) == 2, changes  # one outage (whatever the concurrency), one recovery
    assert "unreachable" in changes[0]
    assert "reachable again" in changes[1]


async def test_a_command_answered_during_an_outage_ends_it(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure starts an outage while another command is in flight; that command's answer
    ends the outage at once, without waiting for the probe."""
    caplog.set_level(logging.INFO, logger="novel_engine.cache.l2")
    tier = RedisTier(redis_server.url, socket_timeout=10, probe_initial=600)
    admin = Redis.from_url(redis_server.url)
    try:
        await tier.set("k", b"before")  # one connection, authenticated as no one needs to be
        await admin.config_set("requirepass", "from-now-on")  # new connections are refused
        await admin.client_pause(10_000, all=False)  # writes wait in Redis
        in_flight = asyncio.create_task(tier.set("k", b"after"))

        async def set_is_waiting() -> bool:
            return (await admin.info("clients"))["blocked_clients"] == 1

        await until(set_is_waiting)
        assert await tier.get("k") is None  # a new connection, refused: the outage starts
        assert tier.health.state == "auth_failed"
        await admin.client_unpause()
        await in_flight
        assert tier.available  # ended by the answer, not by the probe (due in 600 s)
        assert await admin.get("novel-engine:cache:k") == b"after"
    finally:
        await tier.close()
        await admin.aclose()


async def test_connections_are_bounded(redis_server: RedisServer) -> None:
    tier = RedisTier(redis_server.url, max_connections=3)
    direct = Redis.from_url(redis_server.url)
    try:
        await asyncio.gather(*(tier.set(f"k{n}", b"v" * 10_000) for n in range(200)))
        assert await tier.get("k199") == b"v" * 10_000
        clients = await direct.client_list()
        assert len(clients) - 1 <= 3  # the direct client is one of them
    finally:
        await tier.close()
        await direct.aclose()


async def test_unreachable_server_never_raises() -> None:
    tier = RedisTier(f"redis://127.0.0.1:{free_port()}/0")
    try:
        await tier.check()
        assert tier.health.state == "unreachable"
        assert await tier.get("k") is None
        await tier.set("k", b"v")
        await tier.delete("k")
        assert tier.stats.errors == 3
    finally:
        await tier.close()


async def test_closing_ends_the_outage_probe_even_when_its_ping_swallows_the_cancellation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tier = RedisTier(f"redis://127.0.0.1:{free_port()}/0", probe_initial=0.01)
    pings = 0
    pinging = asyncio.Event()

    async def ping() -> bool:
        nonlocal pings
        pings += 1
        if pings == 1:
            raise redis_errors.AuthenticationError("WRONGPASS invalid username-password pair")
        # As redis-py can: a cancellation during a command comes out as its timeout error.
        pinging.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise redis_errors.TimeoutError("Timeout reading from 127.0.0.1") from None
        return True

    monkeypatch.setattr(tier._client, "ping", ping)
    await tier.check()  # auth_failed: the probe starts
    await asyncio.wait_for(pinging.wait(), 10)
    caplog.clear()  # (the auth failure)
    with caplog.at_level(logging.INFO, logger="novel_engine.cache.l2"):
        closing = asyncio.create_task(tier.close())
        done, _ = await asyncio.wait({closing}, timeout=10)
    assert closing in done, "close() did not return: the probe went on after its cancel"
    # Nor did the interrupted PING pass for a new outage, with a probe of its own.
    assert [r.getMessage() for r in caplog.records] == []
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "l2-cache-recovery"]
    pinged = pings
    await asyncio.sleep(0.1)
    assert pings == pinged


async def test_a_redis_refusing_writes_is_counted_and_logged_once_not_per_command(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    tier = RedisTier(redis_server.url)
    direct = Redis.from_url(redis_server.url)
    try:
        await tier.set("before", b"v")
        # Full, and evicting nothing: every write is refused, reads still answered.
        await direct.config_set("maxmemory-policy", "noeviction")
        await direct.config_set("maxmemory", 1)
        with caplog.at_level(logging.WARNING, logger="novel_engine.cache.l2"):
            for n in range(20):
                await tier.set(f"k{n}", b"v")
                assert await tier.get("before") == b"v"
        assert tier.stats.errors == 20
        assert tier.health.state == "ok"  # Redis answers: no outage
        refusals = [r.getMessage() for r in caplog.records if "maxmemory" in r.getMessage()]
        assert len(refusals) == 1, refusals
    finally:
        await direct.config_set("maxmemory", 0)
        await tier.close()
        await direct.aclose()
