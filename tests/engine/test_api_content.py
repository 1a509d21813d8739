"""Content library over HTTP: CRUD, pagination, filters, versions and read-only mode."""

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from novel_engine.content.models import Campaign, Character
from novel_engine.keys import DB
from novel_engine.routes.content import Page

from .api import EngineClient, engine_client, fields, problem

ADA = {"name": "Ada Quill", "faction": "Guild", "archetype": "engineer", "traits": ["curious"]}


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, tmp_path: Path) -> EngineClient:
    return await engine_client(aiohttp_client, tmp_path)


async def test_sample_library_is_served(client: EngineClient) -> None:
    response = await client.get("/v1/characters/ilse-varn")
    assert response.status == 200
    assert response.content_type == "application/json"
    character = Character.model_validate_json(await response.read())
    assert (character.name, character.version) == ("Captain Ilse Varn", 1)
    campaigns = Page[Campaign].model_validate_json(await (await client.get("/v1/campaigns")).read())
    assert len(campaigns.items) == 3


async def test_pages_cover_the_library_once(client: EngineClient) -> None:
    seen: list[str] = []
    url = "/v1/characters?limit=5"
    while True:
        page = Page[Character].model_validate_json(await (await client.get(url)).read())
        assert len(page.items) <= 5
        seen += [character.id for character in page.items]
        if page.next_cursor is None:
            break
        url = f"/v1/characters?limit=5&cursor={page.next_cursor}"
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 12


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("faction=Iron%20Covenant", {"ilse-varn", "bram-holt", "mira-quell"}),
        ("archetype=scout", {"corvin-hale", "nyx-morrow"}),
        ("faction=Iron%20Covenant&archetype=healer", {"mira-quell"}),
        ("faction=Nobody", set()),
        ("faction=%20Iron%20Covenant%09", {"ilse-varn", "bram-holt", "mira-quell"}),  # stored bare
    ],
)
async def test_listing_filters(client: EngineClient, query: str, expected: set[str]) -> None:
    body = await (await client.get(f"/v1/characters?{query}")).json()
    assert {item["id"] for item in body["items"]} == expected


async def test_campaigns_filter_by_atmosphere(client: EngineClient) -> None:
    body = await (await client.get("/v1/campaigns?atmosphere=tense")).json()
    assert [item["id"] for item in body["items"]] == ["siege-of-emberfall"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        # text Python's int() would read, but not an integer as the OpenAPI document writes one
        ("limit=1_0", "limit"),
        ("limit=%2B5", "limit"),
        ("limit=%205", "limit"),
        ("limit=5.0", "limit"),
        # a repeated parameter is refused, whichever value would have won
        ("limit=1&limit=2", "limit"),
        ("limit=1&limit=x", "limit"),
        ("archetype=scout&archetype=leader", "archetype"),
        ("colour=red", "colour"),
        ("archetype=pilot", "archetype"),
        ("cursor=%25%25", "cursor"),
    ],
)
async def test_bad_listing_queries(client: EngineClient, query: str, field: str) -> None:
    body = await problem(await client.get(f"/v1/characters?{query}"), 422)
    assert field in fields(body)


async def test_create_read_update_delete(client: EngineClient) -> None:
    created = await client.post("/v1/characters", json=ADA)
    assert created.status == 201
    assert created.headers["Location"] == "/v1/characters/ada-quill"
    assert (await created.json())["version"] == 1

    fetched = await (await client.get("/v1/characters/ada-quill")).json()
    del fetched["id"]  # the URL names the document
    fetched["faction"] = "Crown"
    updated = await client.put("/v1/characters/ada-quill", json=fetched)
    assert updated.status == 200
    assert (await updated.json())["version"] == 2
    assert (await (await client.get("/v1/characters/ada-quill")).json())["faction"] == "Crown"

    deleted = await client.delete("/v1/characters/ada-quill")
    assert deleted.status == 204
    await problem(await client.get("/v1/characters/ada-quill"), 404)


async def test_create_twice_is_a_conflict(client: EngineClient) -> None:
    assert (await client.post("/v1/characters", json=ADA)).status == 201
    body = await problem(await client.post("/v1/characters", json=ADA), 409)
    assert "already exists" in body["detail"]


async def test_lost_updates_are_refused(client: EngineClient) -> None:
    original: dict[str, Any] = await (await client.get("/v1/campaigns/drowned-library")).json()
    del original["id"]
    first = {**original, "atmosphere": "grim"}
    second = {**original, "atmosphere": "serene"}
    assert (await client.put("/v1/campaigns/drowned-library", json=first)).status == 200
    body = await problem(await client.put("/v1/campaigns/drowned-library", json=second), 409)
    assert "version 2" in body["detail"]


async def test_put_and_delete_of_unknown_documents(client: EngineClient) -> None:
    await problem(await client.put("/v1/characters/nobody", json=ADA), 404)
    await problem(await client.delete("/v1/campaigns/nowhere"), 404)


async def test_a_put_body_has_no_id_the_url_names_the_document(client: EngineClient) -> None:
    body = await problem(
        await client.put("/v1/characters/ilse-varn", json={**ADA, "id": "other"}), 422
    )
    assert fields(body) == {"id"}


async def test_validation_errors_name_every_field(client: EngineClient) -> None:
    bad = {**ADA, "stats": {"strength": 101}, "traits": ["stoic", "stoic"], "eyes": "blue"}
    body = await problem(await client.post("/v1/characters", json=bad), 422)
    assert fields(body) == {"stats.strength", "traits", "eyes"}


async def test_read_only_content_refuses_writes_with_a_clear_message(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, read_only_content=True)
    for response in [
        await client.post("/v1/characters", json=ADA),
        await client.put("/v1/characters/ilse-varn", json=ADA),
        await client.delete("/v1/campaigns/drowned-library"),
    ]:
        body = await problem(response, 409)
        assert "read-only" in body["detail"]
    assert (await client.get("/v1/characters/ilse-varn")).status == 200


async def test_a_write_the_full_database_cannot_take_is_a_507_and_reads_go_on(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = await engine_client(aiohttp_client, tmp_path, db_pool_size=1)
    async with client.app[DB].acquire() as connection:  # the pool's one connection
        # As a full disk would: SQLite may not grow the file by a page more.
        rows = list(await connection.execute_fetchall("PRAGMA page_count"))
        await connection.execute(f"PRAGMA max_page_count = {rows[0][0]}")
    with caplog.at_level(logging.WARNING, logger="novel_engine"):
        for index in range(100):
            filler = {**ADA, "name": f"Filler {index}", "description": "x" * 500}
            response = await client.post("/v1/characters", json=filler)
            if response.status != 201:
                break
        body = await problem(response, 507)
        assert "full" in body["detail"]
        assert (await client.get("/v1/characters/ilse-varn")).status == 200
        for _ in range(5):
            await problem(await client.post("/v1/characters", json=filler), 507)
    # Whoever runs the engine hears of it, once however many writes it refuses.
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "could not store what POST /v1/characters sent (answered 507):"
            " database or disk is full",
        )
    ]


async def test_content_directories_are_served(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    content = tmp_path / "content"
    content.mkdir()
    (content / "extra.json").write_text(
        '{"campaigns": [{"title": "Night Market", "setting": "Lanterns and knives."}]}'
    )
    client = await engine_client(aiohttp_client, tmp_path / "data", content_dirs=(content,))
    body = await (await client.get("/v1/campaigns/night-market")).json()
    assert body["setting"] == "Lanterns and knives."


async def test_a_current_etag_answers_304_and_a_changed_one_the_document(
    client: EngineClient,
) -> None:
    first = await client.get("/v1/characters/ilse-varn")
    tag = first.headers["ETag"]
    unchanged = await client.get("/v1/characters/ilse-varn", headers={"If-None-Match": tag})
    assert (unchanged.status, unchanged.headers["ETag"], await unchanged.read()) == (304, tag, b"")
    weak_in_a_list = {"If-None-Match": f'"other", W/{tag}'}
    assert (await client.get("/v1/characters/ilse-varn", headers=weak_in_a_list)).status == 304

    document = await first.json()
    del document["id"]
    updated = await client.put("/v1/characters/ilse-varn", json={**document, "faction": "Crown"})
    new_tag = updated.headers["ETag"]
    assert new_tag != tag
    changed = await client.get("/v1/characters/ilse-varn", headers={"If-None-Match": tag})
    assert changed.status == 200
    assert changed.headers["ETag"] == new_tag
    assert (await changed.json())["faction"] == "Crown"


async def test_a_create_judges_its_preconditions_on_the_collection(client: EngineClient) -> None:
    """The collection a POST targets exists and has no entity tag: a tag in If-Match, or
    If-None-Match: *, is a 412 and creates nothing; If-Match: * and other tags hold."""
    for refused in ({"If-Match": '"abc"'}, {"If-None-Match": "*"}):
        response = await client.post("/v1/characters", json=ADA, headers=refused)
        assert (await problem(response, 412))["type"].endswith("/precondition-failed")
    assert (await client.get("/v1/characters/ada-quill")).status == 404
    held = {"If-Match": "*", "If-None-Match": '"abc"'}
    assert (await client.post("/v1/characters", json=ADA, headers=held)).status == 201


async def test_if_match_guards_replace_and_delete(client: EngineClient) -> None:
    fetched = await client.get("/v1/characters/bram-holt")
    tag = fetched.headers["ETag"]
    document = await fetched.json()
    del document["id"]
    stale = {"If-Match": '"not-the-current-tag"'}
    response = await client.put("/v1/characters/bram-holt", json=document, headers=stale)
    assert (await problem(response, 412))["type"].endswith("/precondition-failed")
    await problem(await client.delete("/v1/characters/bram-holt", headers=stale), 412)

    changed = {**document, "faction": "Crown"}
    updated = await client.put("/v1/characters/bram-holt", json=changed, headers={"If-Match": tag})
    assert updated.status == 200
    again = await client.put("/v1/characters/bram-holt", json=document, headers={"If-Match": tag})
    await problem(again, 412)  # the tag went stale with the first update
    current = {"If-Match": updated.headers["ETag"]}
    assert (await client.delete("/v1/characters/bram-holt", headers=current)).status == 204


async def test_every_conditional_header_is_honoured_on_reads_and_writes(
    client: EngineClient,
) -> None:
    fetched = await client.get("/v1/characters/bram-holt")
    tag = fetched.headers["ETag"]
    document = await fetched.json()
    del document["id"]
    # A read that requires another tag fails; one that names the current tag reads.
    await problem(await client.get("/v1/characters/bram-holt", headers={"If-Match": '"x"'}), 412)
    assert (await client.get("/v1/characters/bram-holt", headers={"If-Match": tag})).status == 200
    # A write only if the document does not exist, or has not got this tag, fails: it has.
    for none_match in ("*", tag):
        headers = {"If-None-Match": none_match}
        put = await client.put("/v1/characters/bram-holt", json=document, headers=headers)
        assert (await problem(put, 412))["type"].endswith("/precondition-failed")
        await problem(await client.delete("/v1/characters/bram-holt", headers=headers), 412)
    headers = {"If-None-Match": '"another"'}
    assert (
        await client.put("/v1/characters/bram-holt", json=document, headers=headers)
    ).status == 200


async def test_a_tag_of_a_deleted_document_never_matches_the_one_created_again(
    client: EngineClient,
) -> None:
    document = {"id": "aba", "title": "ABA", "setting": "Somewhere."}
    first = await client.post("/v1/campaigns", json=document)
    first_tag = first.headers["ETag"]
    deleted = await client.delete("/v1/campaigns/aba", headers={"If-Match": first_tag})
    assert deleted.status == 204
    again = await client.post("/v1/campaigns", json=document)  # the same bytes sent again
    assert ((await again.json())["version"], again.headers["ETag"] != first_tag) == (2, True)
    stale = await client.delete("/v1/campaigns/aba", headers={"If-Match": first_tag})
    await problem(stale, 412)  # the holder of the first one's tag deletes nothing
    stale_version = {"title": "ABA", "setting": "Elsewhere.", "version": 1}
    await problem(await client.put("/v1/campaigns/aba", json=stale_version), 409)


async def test_a_conditional_header_on_several_lines_is_one_list(client: EngineClient) -> None:
    fetched = await client.get("/v1/characters/bram-holt")
    tag = fetched.headers["ETag"]
    document = await fetched.json()
    del document["id"]
    none_match = [("If-None-Match", '"other"'), ("If-None-Match", tag)]
    assert (await client.get("/v1/characters/bram-holt", headers=none_match)).status == 304
    match = [("If-Match", '"other"'), ("If-Match", tag)]
    assert (await client.get("/v1/characters/bram-holt", headers=match)).status == 200
    # Only the first line read would let this write through: `*` is on the second.
    create_only = [("If-None-Match", '"other"'), ("If-None-Match", "*")]
    put = await client.put("/v1/characters/bram-holt", json=document, headers=create_only)
    await problem(put, 412)
    # One quoted tag may hold commas, and a `*` between them is no wildcard.
    one_odd_tag = {"If-Match": '"a,*,b"'}
    await problem(await client.delete("/v1/characters/bram-holt", headers=one_odd_tag), 412)


async def test_of_concurrent_writes_with_one_if_match_tag_the_losers_get_412(
    client: EngineClient,
) -> None:
    fetched = await client.get("/v1/characters/dagny-kross")
    tag = fetched.headers["ETag"]
    document = await fetched.json()
    del document["id"]
    writes = [
        client.put(
            "/v1/characters/dagny-kross",
            json={**document, "description": f"version {n}"},
            headers={"If-Match": tag},
        )
        for n in range(10)
    ]
    statuses = sorted(response.status for response in await asyncio.gather(*writes))
    assert statuses == [200] + [412] * 9  # never a 409: the tag is what no longer holds
    # `If-Match: *` asks only that the document exists: every one of them applies.
    del document["version"]  # (which would guard against lost updates)
    writes = [
        client.put(
            "/v1/characters/dagny-kross",
            json={**document, "description": f"again {n}"},
            headers={"If-Match": "*"},
        )
        for n in range(10)
    ]
    assert {response.status for response in await asyncio.gather(*writes)} == {200}


async def test_head_answers_the_get_headers_without_a_body(client: EngineClient) -> None:
    got = await client.get("/v1/characters/ilse-varn")
    head = await client.head("/v1/characters/ilse-varn")
    assert (head.status, head.headers["ETag"]) == (200, got.headers["ETag"])
    assert head.headers["Content-Length"] == got.headers["Content-Length"]
    assert await head.read() == b""
    for path in ("/v1/characters", "/healthz", "/openapi.json"):
        assert (await client.head(path)).status == 200


async def test_what_the_schema_calls_valid_is_accepted(client: EngineClient) -> None:
    integral_floats = {**ADA, "stats": {"strength": 70.0}, "equipment": []}
    created = await client.post("/v1/characters", json=integral_floats)
    assert created.status == 201, await created.text()
    assert (await created.json())["stats"]["strength"] == 70
    symbols = await client.post("/v1/characters", json={**ADA, "name": "!!!"})
    assert symbols.status == 201, await symbols.text()
    assert (await symbols.json())["id"].startswith("x-")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": " \t "}, "name"),
        ({"version": 1}, "version"),  # the library numbers documents
        ({"stats": {"strength": "70"}}, "stats.strength"),
        ({"stats": {"strength": 70.5}}, "stats.strength"),
    ],
)
async def test_what_the_schema_calls_invalid_is_refused(
    client: EngineClient, change: dict[str, Any], field: str
) -> None:
    body = await problem(await client.post("/v1/characters", json={**ADA, **change}), 422)
    assert fields(body) == {field}
