"""The bounded load generator the e2e suite runs in a Job: what it sends, how it counts."""

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from novel_engine.loadgen import LoadPlan, main, percentile, plan_from, run_load

from .api import EngineClient, engine_client
from .conftest import free_port


def post_count(metrics_text: str, route: str) -> float:
    """Answered POST requests on `route`, from the engine's latency histogram."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "novel_engine_http_request_duration_seconds":
            return sum(
                sample.value
                for sample in family.samples
                if sample.name.endswith("_count")
                and sample.labels.get("route") == route
                and sample.labels.get("method") == "POST"
            )
    raise AssertionError("no request histogram in /metrics")


def test_plan_spreads_simulations_at_the_asked_share_over_distinct_seeds() -> None:
    plan = LoadPlan(url="http://x", simulation_share=0.25, distinct=3)
    requests = [plan.request(number) for number in range(100)]
    simulations = [body for method, _, body in requests if method == "POST"]
    assert len(simulations) == 25
    assert {body["seed"] for body in simulations if body} == {0, 1, 2}
    assert all(path.startswith("/v1/characters/") for m, path, _ in requests if m == "GET")
    assert requests == [plan.request(number) for number in range(100)]  # deterministic


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.99, 0.0),
        ([1.0], 0.5, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([*range(1, 101)], 0.99, 99),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == expected


async def test_load_against_an_engine_counts_every_answer(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client: EngineClient = await engine_client(aiohttp_client, tmp_path)
    url = str(client.make_url("")).rstrip("/")
    lines: list[str] = []
    plan = LoadPlan(
        url=url,
        concurrency=4,
        max_requests=60,
        duration_seconds=60,
        simulation_share=0.5,
        distinct=3,
        turns=5,
        report_every_seconds=0.001,
    )
    summary = await run_load(plan, emit=lines.append)
    assert summary["requests"] == 60
    assert summary["failures"] == 0
    assert summary["statuses"] == {"200": 60}
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    metrics = await (await client.get("/metrics")).text()
    assert post_count(metrics, "/v1/simulations") == 30
    intervals = [json.loads(line) for line in lines]
    assert intervals
    assert sum(line["requests"] for line in intervals) <= 60


def test_unanswered_requests_fail_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SystemExit) as exit_info:
        main([nobody, "--max-requests", "5", "--concurrency", "2", "--duration", "30"])
    assert exit_info.value.code == 1
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["summary"] is True
    assert summary["requests"] == 5
    assert summary["failures"] == 5
    assert summary["statuses"] == {"error": 5}


def test_allowed_failures_keep_the_exit_status_zero(capsys: pytest.CaptureFixture[str]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    main([nobody, "--max-requests", "3", "--max-failures", "3"])
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["failures"] == 3


async def test_the_duration_bounds_a_run_with_a_large_request_budget(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client: EngineClient = await engine_client(aiohttp_client, tmp_path)
    url = str(client.make_url("")).rstrip("/")
    plan = LoadPlan(url=url, concurrency=2, duration_seconds=0.3, simulation_share=0.0)
    summary = await run_load(plan)
    assert 0 < summary["requests"] < plan.max_requests
    assert summary["failures"] == 0


@pytest.mark.parametrize(
    "argv",
    [["http://x", "--concurrency", "0"], ["http://x", "--simulation-share", "1.5"], []],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "plan",
    [
        LoadPlan(url="http://e:8080"),
        LoadPlan(
            url="http://e:8080",
            concurrency=3,
            duration_seconds=12.5,
            max_requests=7,
            simulation_share=0.25,
            distinct=2,
            turns=9,
            request_timeout_seconds=4.0,
            report_every_seconds=1.5,
            reuse_connections=True,
            max_failures=3,
        ),
    ],
)
def test_a_plan_survives_its_command_line(plan: LoadPlan) -> None:
    assert plan_from(plan.to_args()) == plan
