"""The label-selected watch of referenced objects, against a fake apiserver that injects the
faults the real control plane cannot be made to give on demand: a watch whose resourceVersion
has expired (410 Gone), and watches that something on the way ends at once. Everything else
about the watch is proven on the real control plane (tests/integration/operator_tests/)."""

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes import client as k8s

from novel_operator.kube import watch as watch_module
from novel_operator.kube.watch import LabelSelectorWatch, OnChange

PATH = "/api/v1/namespaces/stories/configmaps"
GONE = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "too old resource version: 10 (15)",
    "reason": "Expired",
    "code": 410,
}


def config_map(name: str, resource_version: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "stories", "resourceVersion": resource_version}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


class FakeApiserver:
    """Lists `a` at resourceVersion 10, whose watch has expired; then lists `b` at 20, whose
    watch sends `c` and stays open."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self._lists = iter([("a", "10"), ("b", "20")])

    async def configmaps(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if request.query.get("watch") != "true":
            name, resource_version = next(self._lists)
            return web.json_response(
                {
                    "kind": "ConfigMapList",
                    "metadata": {"resourceVersion": resource_version},
                    "items": [config_map(name, resource_version)],
                }
            )
        response = web.StreamResponse()
        await response.prepare(request)
        if request.query["resourceVersion"] == "10":
            await response.write(json.dumps({"type": "ERROR", "object": GONE}).encode() + b"\n")
            return response
        event = {"type": "ADDED", "object": config_map("c", "21")}
        await response.write(json.dumps(event).encode() + b"\n")
        await asyncio.sleep(3600)  # an open watch with nothing more to say
        return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def watching(
    aiohttp_server: Any, handler: Handler, on_change: OnChange = lambda *_: None
) -> AsyncIterator[None]:
    """The watch of ConfigMaps labelled team=story in `stories`, against a fake apiserver whose
    collection `handler` serves; cancelled at the end."""
    app = web.Application()
    app.router.add_get(PATH, handler)
    server: TestServer = await aiohttp_server(app)
    configuration = k8s.Configuration(host=str(server.make_url("")).rstrip("/"))
    watch = LabelSelectorWatch(
        configuration, "ConfigMap", "stories", "team=story", on_change, timeout_seconds=60
    )
    task = asyncio.create_task(watch.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_expired_watch_lists_again_and_reports_what_came_and_went(
    aiohttp_server: Any,
) -> None:
    fake = FakeApiserver()
    seen: list[str] = []
    watching_again = asyncio.Event()

    def on_change(namespace: str, name: str) -> None:
        assert namespace == "stories"
        seen.append(name)
        if name == "c":
            watching_again.set()

    async with watching(aiohttp_server, fake.configmaps, on_change):
        await asyncio.wait_for(watching_again.wait(), 10)

    assert seen[0] == "a"  # the first list
    assert sorted(seen[1:3]) == ["a", "b"]  # the second: `a` went, `b` came meanwhile
    assert seen[3:] == ["c"]  # the watch from the second list's resourceVersion
    assert [query.get("resourceVersion") for query in fake.queries] == [None, "10", None, "20"]
    for query in fake.queries:
        assert query["labelSelector"] == "team=story"
    for query in fake.queries[1::2]:
        assert query["watch"] == "true"
        assert query["allowWatchBookmarks"] == "true"
        assert query["timeoutSeconds"] == "60"


async def test_a_watch_that_expires_after_its_events_lists_again_at_once(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expiring after it made progress is a watch's normal end: no back-off (here an hour, so
    a back-off would fail the test) before the next list."""
    monkeypatch.setattr(watch_module, "_BACKOFF_BASE", 3600.0)
    lists = iter(["10", "20"])

    async def configmaps(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            listed = {"kind": "ConfigMapList", "metadata": {"resourceVersion": next(lists)}}
            return web.json_response({**listed, "items": []})
        response = web.StreamResponse()
        await response.prepare(request)
        after_list = int(request.query["resourceVersion"])
        added = {"type": "ADDED", "object": config_map(f"x{after_list}", str(after_list + 1))}
        await response.write(json.dumps(added).encode() + b"\n")
        if after_list == 10:
            await response.write(json.dumps({"type": "ERROR", "object": GONE}).encode() + b"\n")
            return response
        await asyncio.sleep(3600)
        return response

    second_watch = asyncio.Event()

    def on_change(namespace: str, name: str) -> None:
        if name == "x20":
            second_watch.set()

    async with watching(aiohttp_server, configmaps, on_change):
        await asyncio.wait_for(second_watch.wait(), 10)


async def test_a_stop_ends_a_list_being_read_and_its_thread(aiohttp_server: Any) -> None:
    """A list whose body never finishes (a stalled apiserver): cancelling the watch shuts the
    connection down, so its thread ends instead of waiting out the read timeout."""
    listing = asyncio.Event()

    async def stalled_list(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"kind": "ConfigMapList", "items": [')
        listing.set()
        await asyncio.sleep(3600)
        return response

    async with watching(aiohttp_server, stalled_list):
        await asyncio.wait_for(listing.wait(), 10)

    # The thread resolves the watch just before it returns: give it that moment, far less than
    # the 60 s it would wait on a read that nothing shut down.
    for thread in threading.enumerate():
        if thread.name.startswith("watch ConfigMap"):
            await asyncio.to_thread(thread.join, 10)
    assert [t.name for t in threading.enumerate() if t.name.startswith("watch ConfigMap")] == []


@pytest.mark.parametrize("ending", ["empty", "expired"])
async def test_watches_that_end_at_once_are_retried_with_back_off(
    aiohttp_server: Any, ending: str
) -> None:
    """A proxy that closes every watch with nothing in it, or an apiserver whose watch expires
    right after every list: the operator waits between attempts (1 s, then 2 s, ...) instead
    of sending requests as fast as the apiserver answers them."""
    queries: list[dict[str, str]] = []

    async def configmaps(request: web.Request) -> web.StreamResponse:
        queries.append(dict(request.query))
        if request.query.get("watch") != "true":
            listed = {"kind": "ConfigMapList", "metadata": {"resourceVersion": "10"}, "items": []}
            return web.json_response(listed)
        response = web.StreamResponse()
        await response.prepare(request)
        if ending == "expired":
            await response.write(json.dumps({"type": "ERROR", "object": GONE}).encode() + b"\n")
        return response

    async with watching(aiohttp_server, configmaps):
        await asyncio.sleep(3.5)

    watches = [query for query in queries if query.get("watch") == "true"]
    lists = len(queries) - len(watches)
    # Attempts at about 0, 1 and 3 s; without the back-off there were hundreds.
    assert 2 <= len(watches) <= 4
    assert lists == (len(watches) if ending == "expired" else 1)
