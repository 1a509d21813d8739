"""The shared L2 tier with a real redis-server: cross-replica results and surviving its outage."""

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from pytest_aiohttp import AiohttpClient

from novel_engine.metrics import L2_STATE_METRIC, L2_UP_METRIC

from .api import SIEGE, EngineClient, engine_client, metric_samples, problem, until
from .conftest import RedisServer


async def test_a_result_computed_by_one_replica_is_served_by_another(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_server: RedisServer
) -> None:
    first = await engine_client(aiohttp_client, tmp_path / "a", redis_url=redis_server.url)
    second = await engine_client(aiohttp_client, tmp_path / "b", redis_url=redis_server.url)
    computed = await first.post("/v1/simulations", json=SIEGE)
    result = await computed.read()
    url = f"/v1/simulations/{(await computed.json())['id']}"
    served = await second.get(url)
    assert served.status == 200
    assert await served.read() == result


async def test_without_l2_results_stay_in_their_replica(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    first = await engine_client(aiohttp_client, tmp_path / "a")
    second = await engine_client(aiohttp_client, tmp_path / "b")
    simulation_id = (await (await first.post("/v1/simulations", json=SIEGE)).json())["id"]
    body = await problem(await second.get(f"/v1/simulations/{simulation_id}"), 404)
    assert "replica" in body["detail"]


async def test_serving_continues_when_redis_goes_away(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_server: RedisServer
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, redis_url=redis_server.url)
    assert (await client.post("/v1/simulations", json=SIEGE)).status == 200

    await asyncio.to_thread(redis_server.stop)
    for seed in range(3):
        response = await client.post("/v1/simulations", json={**SIEGE, "seed": 100 + seed})
        assert response.status == 200
        simulation_id = (await response.json())["id"]
        assert (await client.get(f"/v1/simulations/{simulation_id}")).status == 200
    assert (await client.get("/v1/characters/ilse-varn")).status == 200
    assert (await client.get("/readyz")).status == 200

    text = await (await client.get("/metrics")).text()
    requests = metric_samples(text, "novel_engine_cache_requests_total")
    assert requests['{result="error",tier="l2"}'] > 0


class CacheCounts:
    """novel_engine_cache_requests_total as one replica's /metrics shows it, by (tier, result)."""

    def __init__(self, client: EngineClient) -> None:
        self._client = client
        self._last: dict[str, float] = {}

    async def _read(self) -> dict[str, float]:
        text = await (await self._client.get("/metrics")).text()
        return metric_samples(text, "novel_engine_cache_requests_total")

    async def start(self) -> None:
        self._last = await self._read()

    async def change(self) -> dict[str, float]:
        """What moved since the last call, as {'l1 miss': 1.0, ...} (unmoved series left out)."""
        now = await self._read()
        moved = {}
        for labels, value in now.items():
            if value != self._last.get(labels, 0.0):
                found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                moved[f"{found['tier']} {found['result']}"] = value - self._last.get(labels, 0.0)
        self._last = now
        return moved


def l2_state(text: str) -> tuple[float, str]:
    """(novel_engine_cache_l2_up, the state whose series is 1) from a /metrics body."""
    up = metric_samples(text, L2_UP_METRIC)[""]
    states = metric_samples(text, L2_STATE_METRIC)
    current = [labels for labels, value in states.items() if value == 1]
    assert len(states) == 3, states
    assert len(current) == 1, states
    return up, re.findall(r'state="(\w+)"', current[0])[0]


async def test_metrics_count_each_tier_once_per_lookup(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_server: RedisServer
) -> None:
    first = await engine_client(aiohttp_client, tmp_path / "a", redis_url=redis_server.url)
    second = await engine_client(aiohttp_client, tmp_path / "b", redis_url=redis_server.url)
    on_first, on_second = CacheCounts(first), CacheCounts(second)
    await on_first.start()
    await on_second.start()

    computed = await first.post("/v1/simulations", json={**SIEGE, "seed": 8})
    url = f"/v1/simulations/{(await computed.json())['id']}"
    assert await on_first.change() == {"l1 miss": 1, "l2 miss": 1, "l3 miss": 1}

    assert (await first.get(url)).status == 200
    assert await on_first.change() == {"l1 hit": 1}
    assert (await second.get(url)).status == 200  # computed by the other replica
    assert await on_second.change() == {"l1 miss": 1, "l2 hit": 1}
    assert (await second.get(url)).status == 200  # promoted into its L1
    assert await on_second.change() == {"l1 hit": 1}
    assert l2_state(await (await second.get("/metrics")).text()) == (1, "ok")

    await asyncio.to_thread(redis_server.stop)
    assert (await second.post("/v1/simulations", json={**SIEGE, "seed": 9})).status == 200
    # L2 counts the failed lookup and the failed write
    assert await on_second.change() == {"l1 miss": 1, "l2 error": 2, "l3 miss": 1}
    assert l2_state(await (await second.get("/metrics")).text()) == (0, "unreachable")
    await asyncio.to_thread(redis_server.start)

    async def l2_is_up() -> bool:
        return l2_state(await (await second.get("/metrics")).text()) == (1, "ok")

    await until(l2_is_up)  # without any request: the probe found Redis again


async def test_wrong_redis_password_shows_on_metrics_from_the_start(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    server = redis_factory(password="s3cret")
    client = await engine_client(
        aiohttp_client, tmp_path, redis_url=server.url, redis_password="not-it"
    )
    text = await (await client.get("/metrics")).text()
    assert l2_state(text) == (0, "auth_failed")
    assert (await client.post("/v1/simulations", json=SIEGE)).status == 200


async def test_without_l2_there_is_no_l2_state(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    text = await (await client.get("/metrics")).text()
    assert L2_UP_METRIC not in text
    assert L2_STATE_METRIC not in text
