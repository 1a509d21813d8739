"""Operational endpoints: probes, draining, Prometheus metrics and the OpenAPI document."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from novel_engine.keys import DB
from novel_engine.metrics import IN_FLIGHT_METRIC, QUEUE_DEPTH_METRIC

from .api import EngineClient, engine_client, metric_samples, problem, until


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, tmp_path: Path) -> EngineClient:
    return await engine_client(aiohttp_client, tmp_path)


async def test_probes_answer_when_ready(client: EngineClient) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    assert await (await client.get("/readyz")).json() == {"status": "ready"}


async def test_readiness_fails_while_draining_but_liveness_holds(client: EngineClient) -> None:
    await client.app.shutdown()  # what the server does when it starts shutting down
    body = await problem(await client.get("/readyz"), 503)
    assert "draining" in body["detail"]
    assert (await client.get("/healthz")).status == 200


async def test_request_latency_is_labelled_by_route_template(client: EngineClient) -> None:
    await client.get("/v1/characters/ilse-varn")
    await client.get("/v1/characters/no-such-one")
    await client.head("/v1/characters/ilse-varn")
    await client.get("/nowhere")
    for method in ("PROPFIND", "LOCK", "PROPFIND"):  # methods outside the closed set: "other"
        assert (await client.request(method, "/v1/characters/ilse-varn")).status == 405
    text = await (await client.get("/metrics")).text()
    counts = metric_samples(text, "novel_engine_http_request_duration_seconds_count")
    assert counts['{method="GET",route="/v1/characters/{id}",status_class="2xx"}'] == 1
    assert counts['{method="GET",route="/v1/characters/{id}",status_class="4xx"}'] == 1
    assert counts['{method="HEAD",route="/v1/characters/{id}",status_class="2xx"}'] == 1
    assert counts['{method="GET",route="none",status_class="4xx"}'] == 1
    assert counts['{method="other",route="none",status_class="4xx"}'] == 3
    assert not any("ilse-varn" in labels or "PROPFIND" in labels for labels in counts)


async def test_in_flight_counts_api_requests_but_not_probes_or_scrapes(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, db_pool_size=1)

    async def in_flight() -> float:
        assert (await client.get("/readyz")).status == 200
        return metric_samples(await (await client.get("/metrics")).text(), IN_FLIGHT_METRIC)[""]

    async def in_flight_is(value: float) -> bool:
        return await in_flight() == value

    assert await in_flight() == 0
    async with client.app[DB].acquire():  # the next API request waits for the connection
        waiting = asyncio.ensure_future(client.get("/v1/characters"))
        await until(lambda: in_flight_is(1))
        assert await in_flight() == 1
    assert (await waiting).status == 200
    assert await in_flight() == 0


async def test_metrics_expose_the_contract_names(client: EngineClient) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type.startswith("text/plain")
    text = await response.text()
    for name in [
        IN_FLIGHT_METRIC,
        "novel_engine_scheduler_queue_depth",
        "novel_engine_cache_requests_total",
        "novel_engine_db_pool_wait_seconds_bucket",
        "process_resident_memory_bytes",
    ]:
        assert name in text


async def test_the_autoscalers_scrape_gets_its_two_families_alone(client: EngineClient) -> None:
    """The operator asks for the two metrics it scales on by name; only they are collected."""
    response = await client.get(
        "/metrics", params=[("name[]", IN_FLIGHT_METRIC), ("name[]", QUEUE_DEPTH_METRIC)]
    )
    text = await response.text()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert families == {IN_FLIGHT_METRIC, QUEUE_DEPTH_METRIC}


@pytest.mark.parametrize(
    ("accept_encoding", "coding"),
    [
        ("gzip", "gzip"),
        ("deflate, gzip;q=0.5", "gzip"),
        ("*", "gzip"),
        ("gzip;q=0", None),  # q=0: not acceptable (RFC 9110, section 12.5.3)
        ("gzip;q=0, *", None),
        ("*;q=0", None),
        ("br", None),
        ("identity", None),
    ],
)
async def test_metrics_are_gzipped_only_for_a_client_that_accepts_gzip(
    client: EngineClient, accept_encoding: str, coding: str | None
) -> None:
    response = await client.get("/metrics", headers={"Accept-Encoding": accept_encoding})
    assert response.status == 200
    assert response.headers.get("Content-Encoding") == coding
    # A cache must not answer another client with this client's format or coding.
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert IN_FLIGHT_METRIC in await response.text()


def resolve(document: dict[str, Any], reference: str) -> Any:
    node: Any = document
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


async def test_openapi_covers_every_route(client: EngineClient) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    registered = {
        (route.resource.canonical, route.method.lower())
        for route in client.app.router.routes()
        # "*" is the catch-all route that answers 404 and 405
        if route.resource is not None and route.method != "*"
    }
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert registered == documented
    assert {"/healthz", "/readyz", "/metrics", "/openapi.json"} <= {p for p, _ in documented}
    assert {(path, "head") for path, method in documented if method == "get"} <= documented


async def test_openapi_references_resolve_and_schemas_come_from_the_models(
    client: EngineClient,
) -> None:
    document = await (await client.get("/openapi.json")).json()
    for reference in references(document):
        assert resolve(document, reference) is not None
    schemas = document["components"]["schemas"]
    request = schemas["SimulationRequest"]
    assert request["additionalProperties"] is False
    assert request["properties"]["turns"]["maximum"] == 200
    assert request["properties"]["character_ids"]["maxItems"] == 8
    post = document["paths"]["/v1/simulations"]["post"]
    assert set(post["responses"]) >= {"200", "202", "400", "413", "422", "429"}
    result = document["paths"]["/v1/simulations/{id}"]["get"]
    assert set(result["responses"]) >= {"404", "429", "503", "504"}  # 504: recompute deadline
    for path in ("/v1/characters", "/v1/characters/{id}", "/v1/campaigns", "/v1/campaigns/{id}"):
        for operation in document["paths"][path].values():
            assert "503" in operation["responses"]  # the database pool is busy
    problem_content = post["responses"]["422"]["content"]
    assert "application/problem+json" in problem_content
    assert request["properties"]["character_ids"]["uniqueItems"] is True
    assert schemas["CharacterInput"]["properties"]["traits"]["uniqueItems"] is True
    assert "version" not in schemas["CharacterInput"]["properties"]
    assert "id" not in schemas["CharacterReplacement"]["properties"]
    item = document["paths"]["/v1/characters/{id}"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    assert "304" in item["get"]["responses"]
    for method in ("get", "put", "delete"):
        names = {p["name"] for p in item[method]["parameters"]}
        assert {"If-Match", "If-None-Match"} <= names
        assert "412" in item[method]["responses"]
    created = document["paths"]["/v1/characters"]["post"]["responses"]["201"]
    assert {"ETag", "Location"} <= set(created["headers"])
    assert "Location" in post["responses"]["202"]["headers"]
    assert [p["name"] for p in post["parameters"]] == ["If-Match"]
    assert "412" in post["responses"]
    assert {"415", "417", "501"} <= set(post["responses"])
    assert "417" in document["paths"]["/healthz"]["get"]["responses"]
    listing = document["paths"]["/v1/characters"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "cursor", "faction", "archetype"}


async def test_the_document_describes_the_answers_as_they_are_sent(client: EngineClient) -> None:
    document = await (await client.get("/openapi.json")).json()
    paths = document["paths"]
    served = await client.get("/openapi.json")
    assert paths["/openapi.json"]["get"]["responses"]["200"]["content"] == {
        "application/json": {"schema": {"type": "object"}}
    }
    assert isinstance(await served.json(), dict)

    openmetrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    content_type = openmetrics.headers["Content-Type"].split(";")[0]
    assert content_type in paths["/metrics"]["get"]["responses"]["200"]["content"]
    # The weights decide, not the order: q=0 refuses a type, a heavier one wins.
    for accept, served_type in (
        ("application/openmetrics-text;q=0, text/plain", "text/plain"),
        ("application/openmetrics-text;q=0.1, text/plain", "text/plain"),
        ("text/plain;q=0.5, application/openmetrics-text", "application/openmetrics-text"),
        ("text/plain, application/openmetrics-text", "text/plain"),
        ("*/*;q=0.9, application/openmetrics-text;q=0.5", "text/plain"),
        (  # what Prometheus 3 sends
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
            "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;"
            "escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
            "application/openmetrics-text",
        ),
    ):
        answer = await client.get("/metrics", headers={"Accept": accept})
        assert answer.headers["Content-Type"].split(";")[0] == served_type, accept

    created = await client.post("/v1/campaigns", json={"title": "Ash Road", "setting": "Dust."})
    deleted = await client.delete(f"/v1/campaigns/{(await created.json())['id']}")
    assert (deleted.status, "ETag" in deleted.headers) == (204, False)
    assert "headers" not in paths["/v1/campaigns/{id}"]["delete"]["responses"]["204"]

    await client.app.shutdown()  # draining: not ready
    not_ready = await client.get("/readyz")
    assert (not_ready.status, "Retry-After" in not_ready.headers) == (503, False)
    assert "headers" not in paths["/readyz"]["get"]["responses"]["503"]
    assert "Retry-After" in paths["/v1/simulations"]["post"]["responses"]["503"]["headers"]


def operation_path(document: dict[str, Any], operation_id: str) -> tuple[str, str]:
    """(path, method) of the operation with this id."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation["operationId"] == operation_id:
                return path, method
    raise AssertionError(f"no operation {operation_id}")


@pytest.mark.parametrize(("mode", "status"), [("sync", "200"), ("async", "202")])
async def test_the_documented_simulation_example_runs_and_its_links_lead_to_the_result(
    client: EngineClient, mode: str, status: str
) -> None:
    document = await (await client.get("/openapi.json")).json()
    [example] = document["components"]["schemas"]["SimulationRequest"]["examples"]
    post = document["paths"]["/v1/simulations"]["post"]
    response = await client.post("/v1/simulations", json={**example, "mode": mode})
    assert str(response.status) == status  # the example's content is in a new engine's library
    body = await response.json()

    links = post["responses"][status]["links"]
    assert len(links) == 2  # the GET and the HEAD beside it
    for link in links.values():
        assert link["parameters"] == {"id": "$response.body#/id"}
        path, method = operation_path(document, link["operationId"])
        followed = await client.request(method.upper(), path.replace("{id}", body["id"]))
        assert followed.status == 200
