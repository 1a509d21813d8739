"""Helpers for tests that drive the engine app over HTTP with aiohttp's test client."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from novel_engine.app import create_app
from novel_engine.config import Settings
from novel_engine.server import SERVER_OPTIONS

EngineClient = TestClient[Any, Any]
JSON = {"Content-Type": "application/json"}
FULL_CAST = [
    "ilse-varn", "bram-holt", "mira-quell", "seren-ashdown",
    "corvin-hale", "dagny-kross", "oriel-thane", "wren-aldane",
]  # fmt: skip
SIEGE_CAST = ["ilse-varn", "seren-ashdown", "dagny-kross", "wren-aldane"]
SIEGE: dict[str, Any] = {
    "character_ids": SIEGE_CAST,
    "campaign_id": "siege-of-emberfall",
    "turns": 20,
    "seed": 7,
}


async def engine_client(
    aiohttp_client: AiohttpClient, data_dir: Path, **settings: Any
) -> EngineClient:
    """An engine app on a test server, with its data in ``data_dir``."""
    server = TestServer(create_app(Settings(data_dir=data_dir, **settings)))
    await server.start_server(**SERVER_OPTIONS)  # (TestServer drops options given to it)
    client: EngineClient = await aiohttp_client(server)
    return client


async def problem(response: ClientResponse, status: int) -> dict[str, Any]:
    """The problem+json body of ``response``, which must have ``status``."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["status"] == status
    assert "Traceback" not in await response.text()
    return body


def fields(body: dict[str, Any]) -> set[str]:
    """The field paths a validation problem names."""
    return {error["field"] for error in body.get("errors", ())}


async def until(condition: Callable[[], Awaitable[bool] | bool], seconds: float = 60) -> None:
    """Poll ``condition`` (a plain or async predicate) until it holds; fail the test after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await _holds(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.01)


async def _holds(condition: Callable[[], Awaitable[bool] | bool]) -> bool:
    outcome = condition()
    return await outcome if inspect.isawaitable(outcome) else outcome


def metric_samples(text: str, name: str) -> dict[str, float]:
    """Sample lines of one metric: {'{labels}': value}."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name) :].rpartition(" ")
            found[labels] = float(value)
    return found
