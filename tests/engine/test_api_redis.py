"""The shared L2 tier with a real redis-server: cross-replica results and surviving its outage."""

import asyncio
from pathlib import Path

from pytest_aiohttp import AiohttpClient

from .api import SIEGE, engine_client, metric_samples, problem
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
