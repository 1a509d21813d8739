"""Scraping engine pods: the engine's real /metrics, and the ways a scrape fails (hang, garbage,
HTTP error, refused, a pod without an address, which is never connected to)."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from novel_engine.app import create_app
from novel_engine.config import Settings
from novel_operator.scaling import EngineMetric
from novel_operator.scrape import (
    AddressMapFile,
    PodIPResolver,
    Scraper,
    ScrapeResult,
    parse_engine_metrics,
    parse_l2_state,
)

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


def pod(name: str, namespace: str = "stories", ip: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "status": {"podIP": ip}}


async def address_map(path: Path, addresses: dict[str, str]) -> AddressMapFile:
    await asyncio.to_thread(path.write_text, json.dumps(addresses))
    resolver = AddressMapFile(path)
    await resolver.refresh()
    return resolver


def counting_app(
    name: str,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    hits: dict[str, int],
) -> web.Application:
    app = web.Application()

    async def counted(request: web.Request) -> web.StreamResponse:
        hits[name] = hits.get(name, 0) + 1
        return await handler(request)

    app.router.add_get("/metrics", counted)
    return app


async def test_the_engines_own_metrics_parse_with_the_queue_summed_over_priorities(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    engine = await aiohttp_server(create_app(Settings(data_dir=tmp_path / "data")))
    resolver = await address_map(tmp_path / "map.json", {"stories/a": f"127.0.0.1:{engine.port}"})

    async with Scraper(resolver) as scraper:
        (result,) = await scraper.scrape([pod("a")])

    assert result.result is ScrapeResult.OK
    # The scrape itself is not in flight (the engine leaves /metrics out of the gauge).
    assert result.values == {EngineMetric.IN_FLIGHT: 0.0, EngineMetric.QUEUE_DEPTH: 0.0}


def test_queue_depth_is_the_sum_of_the_priorities() -> None:
    text = (
        "# TYPE novel_engine_http_requests_in_flight gauge\n"
        "novel_engine_http_requests_in_flight 3.0\n"
        "# TYPE novel_engine_scheduler_queue_depth gauge\n"
        'novel_engine_scheduler_queue_depth{priority="critical"} 1.0\n'
        'novel_engine_scheduler_queue_depth{priority="normal"} 4.0\n'
        'novel_engine_scheduler_queue_depth{priority="low"} 2.0\n'
        "# TYPE novel_engine_http_request_duration_seconds histogram\n"
        'novel_engine_http_request_duration_seconds_bucket{le="+Inf"} 9.0\n'
    )
    assert parse_engine_metrics(text) == {
        EngineMetric.IN_FLIGHT: 3.0,
        EngineMetric.QUEUE_DEPTH: 7.0,
    }


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-1.0"])
def test_a_value_that_is_not_a_count_makes_the_scrape_invalid(value: str) -> None:
    text = (
        "# TYPE novel_engine_http_requests_in_flight gauge\n"
        f"novel_engine_http_requests_in_flight {value}\n"
        "# TYPE novel_engine_scheduler_queue_depth gauge\n"
        'novel_engine_scheduler_queue_depth{priority="normal"} 4.0\n'
    )
    with pytest.raises(ValueError, match="not a count"):
        parse_engine_metrics(text)


async def test_the_l2_state_comes_with_the_scrape_when_the_engine_has_l2(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    unreachable_l2 = Settings(data_dir=tmp_path / "a", redis_url="redis://127.0.0.1:1/0")
    with_l2 = await aiohttp_server(create_app(unreachable_l2))
    without_l2 = await aiohttp_server(create_app(Settings(data_dir=tmp_path / "b")))
    resolver = await address_map(
        tmp_path / "map.json",
        {"stories/a": f"127.0.0.1:{with_l2.port}", "stories/b": f"127.0.0.1:{without_l2.port}"},
    )
    async with Scraper(resolver) as scraper:
        first, second = await scraper.scrape([pod("a"), pod("b")])
    assert (first.result, first.l2_state) == (ScrapeResult.OK, "unreachable")
    assert (second.result, second.l2_state) == (ScrapeResult.OK, None)


def test_the_l2_state_is_the_series_at_one() -> None:
    text = (
        "# TYPE novel_engine_cache_l2_state gauge\n"
        'novel_engine_cache_l2_state{state="ok"} 0.0\n'
        'novel_engine_cache_l2_state{state="unreachable"} 0.0\n'
        'novel_engine_cache_l2_state{state="auth_failed"} 1.0\n'
    )
    assert parse_l2_state(text) == "auth_failed"
    assert parse_l2_state("novel_engine_http_requests_in_flight 0.0\n") is None


async def test_the_timeout_counts_from_the_request_not_from_the_wait_for_a_connection(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    # One connection for five pods that each answer in 0.5 s: the last one waits 2 s for its
    # turn, as long as the timeout, yet none of them is slow.
    async def metrics(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(
            text="novel_engine_http_requests_in_flight 1.0\n"
            'novel_engine_scheduler_queue_depth{priority="normal"} 0.0\n'
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    server = await aiohttp_server(app)
    names = [f"engine-{index}" for index in range(5)]
    resolver = await address_map(
        tmp_path / "map.json", {f"stories/{name}": f"127.0.0.1:{server.port}" for name in names}
    )
    async with Scraper(resolver, timeout=2.0, connections=1) as scraper:
        results = await scraper.scrape([pod(name) for name in names])
    assert [result.result for result in results] == [ScrapeResult.OK] * 5


async def test_every_failure_has_its_result_and_an_unmapped_pod_is_never_contacted(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>{{{ not metrics")

    async def other_metrics(request: web.Request) -> web.Response:
        return web.Response(text="# TYPE up gauge\nup 1.0\n")

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    hits: dict[str, int] = {}
    servers = {
        name: await aiohttp_server(counting_app(name, handler, hits))
        for name, handler in {
            "hang": hang,
            "garbage": garbage,
            "other": other_metrics,
            "failing": failing,
        }.items()
    }
    refused = TestServer(web.Application())
    await refused.start_server()
    refused_port = refused.port
    await refused.close()
    addresses = {f"stories/{name}": f"127.0.0.1:{server.port}" for name, server in servers.items()}
    addresses["stories/refused"] = f"127.0.0.1:{refused_port}"
    resolver = await address_map(tmp_path / "map.json", addresses)
    # Same address as a live server, but another namespace: not in the map.
    unmapped = pod("garbage", namespace="elsewhere", ip="127.0.0.1")

    async with Scraper(resolver, timeout=0.3) as scraper:
        results = await scraper.scrape(
            [pod("hang"), pod("garbage"), pod("other"), pod("failing"), pod("refused"), unmapped]
        )
    release.set()

    assert [r.result for r in results] == [
        ScrapeResult.TIMEOUT,
        ScrapeResult.INVALID,
        ScrapeResult.INVALID,
        ScrapeResult.ERROR,
        ScrapeResult.ERROR,
        ScrapeResult.UNRESOLVED,
    ]
    assert all(r.values == {} for r in results)
    assert hits["garbage"] == 1  # only the mapped pod's scrape


async def test_the_map_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    resolver = await address_map(path, {})
    assert resolver.address(pod("a")) is None

    await asyncio.to_thread(path.write_text, json.dumps({"stories/a": "127.0.0.1:9"}))
    await resolver.refresh()

    assert resolver.address(pod("a")) == "127.0.0.1:9"


def test_in_a_cluster_a_pod_is_reached_at_its_ip_and_the_engine_port() -> None:
    resolver = PodIPResolver()
    assert resolver.address(pod("a", ip="10.1.2.3")) == "10.1.2.3:8080"
    assert resolver.address(pod("a", ip="fd00::5")) == "[fd00::5]:8080"
    assert resolver.address(pod("a")) is None  # no IP yet


@pytest.mark.parametrize("replacement", ["null", "[1, 2]", "7", '{"stories/a": '])
async def test_an_address_map_that_is_no_map_keeps_the_known_addresses(
    tmp_path: Path, replacement: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "map.json"
    resolver = await address_map(path, {"stories/a": "127.0.0.1:9"})
    await asyncio.to_thread(path.write_text, replacement)

    await resolver.refresh()
    await resolver.refresh()  # the same file again: no second warning

    assert resolver.address(pod("a")) == "127.0.0.1:9"
    assert caplog.text.count(f"address map {path} unreadable") == 1
