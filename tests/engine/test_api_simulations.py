"""Simulations over HTTP: sync and async runs, determinism, job records, overload and executors."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient

from novel_engine.jobs import SHUTDOWN_REASON, JobStatus
from novel_engine.keys import CACHE, JOBS
from novel_engine.simulation import run_simulation
from novel_engine.simulation.result import SimulationResult
from novel_engine.simulation.service import INLINE_COST_LIMIT, result_key

from .api import (
    FULL_CAST,
    SIEGE,
    SIEGE_CAST,
    EngineClient,
    engine_client,
    metric_samples,
    problem,
    until,
)
from .conftest import files_size
from .samples import sample_input


def heavy(seed: int, **extra: Any) -> dict[str, Any]:
    """A long simulation (8 characters x 200 turns) that keeps a worker busy for a while."""
    return {"character_ids": FULL_CAST, "turns": 200, "seed": seed, **extra}


async def wait_for_result(client: EngineClient, url: str) -> bytes:
    bodies = []

    async def finished() -> bool:
        response = await client.get(url)
        assert response.status == 200
        bodies.append(await response.read())
        return bool(json.loads(bodies[-1])["status"] == "succeeded")

    await until(finished)
    return bodies[-1]


async def test_sync_simulation_returns_the_full_result(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    response = await client.post("/v1/simulations", json=SIEGE)
    assert response.status == 200
    raw = await response.read()
    result = SimulationResult.model_validate_json(raw)
    assert {p.id for p in result.participants} == set(SIEGE_CAST)
    assert len(result.turns) == result.stats.turns_played
    assert "The Siege of Emberfall" in result.story
    # The engine's answer is exactly the model's output for the stored content.
    expected = sample_input(SIEGE_CAST, "siege-of-emberfall", turns=20, seed=7)
    assert raw == run_simulation(expected)
    assert result.id == expected.simulation_id()


async def test_same_request_same_id_and_bytes_whatever_the_priority(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    first = await (await client.post("/v1/simulations", json=SIEGE)).read()
    again = await (await client.post("/v1/simulations", json={**SIEGE, "priority": "low"})).read()
    shuffled = {**SIEGE, "character_ids": SIEGE_CAST[::-1], "priority": "critical"}
    reordered = await (await client.post("/v1/simulations", json=shuffled)).read()
    assert first == again == reordered
    other_seed = await (await client.post("/v1/simulations", json={**SIEGE, "seed": 8})).read()
    assert json.loads(other_seed)["id"] != json.loads(first)["id"]


async def test_editing_a_character_gives_a_new_simulation(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    before = await (await client.post("/v1/simulations", json=SIEGE)).json()
    character = await (await client.get("/v1/characters/dagny-kross")).json()
    del character["id"]  # the URL names the document
    character["traits"] = ["diplomatic", "compassionate"]
    assert (await client.put("/v1/characters/dagny-kross", json=character)).status == 200
    after = await (await client.post("/v1/simulations", json=SIEGE)).json()
    assert after["id"] != before["id"]
    # The earlier result stays available under its own id.
    assert (await client.get(f"/v1/simulations/{before['id']}")).status == 200


async def test_async_simulation_is_accepted_then_served(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    response = await client.post("/v1/simulations", json={**SIEGE, "mode": "async"})
    assert response.status == 202
    accepted = await response.json()
    assert accepted["status"] in {"queued", "succeeded"}
    assert (
        response.headers["Location"]
        == accepted["status_url"]
        == f"/v1/simulations/{accepted['id']}"
    )
    result = await wait_for_result(client, accepted["status_url"])
    assert result == await (await client.post("/v1/simulations", json=SIEGE)).read()
    resubmitted = await client.post("/v1/simulations", json={**SIEGE, "mode": "async"})
    assert (await resubmitted.json())["status"] == "succeeded"


async def test_identical_async_requests_at_the_same_time_share_one_job(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, process_cost_threshold=50)
    responses = await asyncio.gather(
        *(client.post("/v1/simulations", json={**SIEGE, "mode": "async"}) for _ in range(4))
    )
    assert [response.status for response in responses] == [202] * 4
    accepted = [await response.json() for response in responses]
    assert len({body["id"] for body in accepted}) == 1
    result = await wait_for_result(client, accepted[0]["status_url"])
    assert json.loads(result)["id"] == accepted[0]["id"]
    assert await scheduler_tasks(client, "process") == 1


async def test_a_simulation_post_with_if_match_is_a_412_and_runs_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """`/v1/simulations` has no representation, which If-Match (`*` too) never matches;
    If-None-Match always holds there."""
    client = await engine_client(aiohttp_client, tmp_path)
    for value in ('"abc"', "*"):
        for mode in ("sync", "async"):
            body = {**SIEGE, "mode": mode}
            response = await client.post("/v1/simulations", json=body, headers={"If-Match": value})
            assert (await problem(response, 412))["type"].endswith("/precondition-failed")
    for executor in ("inline", "thread", "process"):
        assert await scheduler_tasks(client, executor) == 0
    held = await client.post("/v1/simulations", json=SIEGE, headers={"If-None-Match": "*"})
    assert held.status == 200


async def test_an_async_request_answered_from_the_cache_records_its_job(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    result = await (await client.post("/v1/simulations", json=SIEGE)).read()
    response = await client.post("/v1/simulations", json={**SIEGE, "mode": "async"})
    accepted = await response.json()
    assert (response.status, accepted["status"]) == (202, "succeeded")
    await client.app[CACHE].delete(result_key(accepted["id"]))
    polled = await client.get(accepted["status_url"])
    assert polled.status == 200
    assert await polled.read() == result


async def test_unknown_simulation_explains_replica_locality(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    body = await problem(await client.get("/v1/simulations/" + "0" * 64), 404)
    assert "replica" in body["detail"]
    assert "same request" in body["detail"]


async def test_results_and_job_states_survive_a_restart(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    accepted = await (await client.post("/v1/simulations", json={**SIEGE, "mode": "async"})).json()
    result = await wait_for_result(client, accepted["status_url"])
    await client.close()

    restarted = await engine_client(aiohttp_client, tmp_path)
    response = await restarted.get(accepted["status_url"])
    assert response.status == 200
    assert await response.read() == result


async def test_a_finished_job_is_recomputed_if_the_cache_let_it_go(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    accepted = await (await client.post("/v1/simulations", json={**SIEGE, "mode": "async"})).json()
    result = await wait_for_result(client, accepted["status_url"])

    async def recorded() -> bool:  # the result is cached before the record says succeeded
        job = await client.app[JOBS].store.get(accepted["id"])
        return job is not None and job.status is JobStatus.SUCCEEDED

    await until(recorded)
    await client.app[CACHE].delete(result_key(accepted["id"]))
    assert await (await client.get(accepted["status_url"])).read() == result


async def test_a_result_answers_if_none_match_with_304_on_any_replica(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path / "one")
    created = await client.post("/v1/simulations", json=SIEGE)
    url = f"/v1/simulations/{(await created.json())['id']}"
    served = await client.get(url)
    tag = served.headers["ETag"]
    unchanged = await client.get(url, headers={"If-None-Match": tag})
    assert (unchanged.status, unchanged.headers["ETag"], await unchanged.read()) == (304, tag, b"")
    head = await client.head(url)
    assert (head.status, head.headers["ETag"]) == (200, tag)

    # Another replica computes the same bytes, so the tag a client holds stays good there.
    other = await engine_client(aiohttp_client, tmp_path / "other")
    assert (await other.post("/v1/simulations", json=SIEGE)).status == 200
    assert (await other.get(url, headers={"If-None-Match": tag})).status == 304


async def test_a_job_status_tag_goes_stale_when_the_result_arrives(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    accepted = await client.post("/v1/simulations", json=heavy(0, mode="async"))
    url = (await accepted.json())["status_url"]
    pending = await client.get(url)
    assert (await pending.json())["status"] in ("queued", "running")
    result = await wait_for_result(client, url)

    answered = await client.get(url, headers={"If-None-Match": pending.headers["ETag"]})
    assert answered.status == 200
    assert await answered.read() == result
    assert answered.headers["ETag"] != pending.headers["ETag"]


async def test_queued_jobs_are_recorded_failed_at_shutdown(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, thread_workers=1, drain_timeout=0.2)
    ids = []
    for seed in range(12):
        response = await client.post("/v1/simulations", json=heavy(seed, mode="async"))
        assert response.status == 202
        ids.append((await response.json())["id"])
    await client.close()  # shuts down with jobs still queued

    restarted = await engine_client(aiohttp_client, tmp_path)
    states = []
    for simulation_id in ids:
        body = await (await restarted.get(f"/v1/simulations/{simulation_id}")).json()
        states.append(body["status"])
        if body["status"] == "failed":
            assert body["error"] == SHUTDOWN_REASON
    assert set(states) <= {"succeeded", "failed"}  # none is left queued or lost
    assert "failed" in states  # one worker cannot run twelve long jobs in 0.2 s


@pytest.fixture
async def small_queue(aiohttp_client: AiohttpClient, tmp_path: Path) -> EngineClient:
    """An engine with room for one queued task and one worker per executor."""
    return await engine_client(
        aiohttp_client,
        tmp_path,
        queue_limit=1,
        thread_workers=1,
        process_workers=1,
        task_deadline=120,
    )


async def flood(client: EngineClient, mode: str) -> list[ClientResponse]:
    """Six long simulations at once: more than the small queue holds."""
    return await asyncio.gather(
        *(client.post("/v1/simulations", json=heavy(seed, mode=mode)) for seed in range(6))
    )


async def test_a_flooded_queue_answers_429_with_retry_after(small_queue: EngineClient) -> None:
    responses = await flood(small_queue, "sync")
    statuses = sorted(response.status for response in responses)
    assert statuses[0] == 200
    assert statuses[-1] == 429
    for response in responses:
        if response.status == 429:
            body = await problem(response, 429)
            assert int(response.headers["Retry-After"]) >= 1
            assert "capacity" in body["detail"]


async def test_a_rejected_async_request_leaves_no_job(small_queue: EngineClient) -> None:
    responses = await flood(small_queue, "async")
    rejected = [seed for seed, response in enumerate(responses) if response.status == 429]
    assert rejected
    for seed in rejected:
        simulation_id = sample_input(FULL_CAST, turns=200, seed=seed).simulation_id()
        await problem(await small_queue.get(f"/v1/simulations/{simulation_id}"), 404)


async def scheduler_tasks(client: EngineClient, executor: str) -> float:
    text = await (await client.get("/metrics")).text()
    prefix = f'novel_engine_scheduler_tasks_total{{executor="{executor}",outcome="ok"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def test_costly_simulations_run_in_the_process_pool_with_the_same_result(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, process_cost_threshold=50)
    raw = await (await client.post("/v1/simulations", json=SIEGE)).read()  # cost 4 x 20 = 80
    assert await scheduler_tasks(client, "process") == 1
    expected = sample_input(SIEGE_CAST, "siege-of-emberfall", turns=20, seed=7)
    assert raw == run_simulation(expected)


async def test_simulations_over_the_inline_limit_run_in_the_process_pool_by_default(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    cheapest_in_the_pool = {**SIEGE, "turns": INLINE_COST_LIMIT // len(SIEGE_CAST) + 1}
    assert (await client.post("/v1/simulations", json=cheapest_in_the_pool)).status == 200
    assert await scheduler_tasks(client, "process") == 1  # the default threshold: over 40
    inline_at_most = {**SIEGE, "turns": INLINE_COST_LIMIT // len(SIEGE_CAST)}
    assert (await client.post("/v1/simulations", json=inline_at_most)).status == 200
    assert (await client.post("/v1/simulations", json={**SIEGE, "turns": 2})).status == 200
    assert await scheduler_tasks(client, "inline") == 2
    assert await scheduler_tasks(client, "process") == 1


async def test_the_database_stays_within_l3_max_bytes_on_disk(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    max_bytes = 600_000
    client = await engine_client(aiohttp_client, tmp_path, l3_max_bytes=max_bytes)
    sizes = []
    for seed in range(80):
        response = await client.post("/v1/simulations", json={**SIEGE, "turns": 40, "seed": seed})
        assert response.status == 200
        sizes.append(files_size(tmp_path))
    assert max(sizes) <= max_bytes
    text = await (await client.get("/metrics")).text()
    assert metric_samples(text, "novel_engine_cache_evictions_total")['{tier="l3"}'] > 0
