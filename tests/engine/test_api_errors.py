"""Bad input and failures always answer problem+json with the right status, never a trace."""

import gzip
import json
import sqlite3
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from novel_engine.app import DATABASE_FILE
from novel_engine.content.store import AnyKind
from novel_engine.keys import CONTENT, DB, SCHEDULER

from .api import JSON, SIEGE, EngineClient, engine_client, fields, problem


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, tmp_path: Path) -> EngineClient:
    return await engine_client(aiohttp_client, tmp_path, max_body_bytes=4096)


@pytest.mark.parametrize("body", [b"{", b'{"character_ids": [}', b"\xff\xfe"])
async def test_malformed_json_is_400(client: EngineClient, body: bytes) -> None:
    problem_body = await problem(await client.post("/v1/simulations", data=body, headers=JSON), 400)
    assert "not valid JSON" in problem_body["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/simulations", b'{"character_ids": ["ilse-varn", "bram-holt"], "turns": NaN}'),
        (
            "/v1/campaigns",
            b'{"title": "T", "setting": "S", "events": '
            b'[{"trigger_turn": 1, "probability": Infinity, "description": "D"}]}',
        ),
    ],
)
async def test_nan_and_infinity_are_malformed_json_not_invalid_fields(
    client: EngineClient, path: str, body: bytes
) -> None:
    problem_body = await problem(await client.post(path, data=body, headers=JSON), 400)
    assert "is not a JSON value" in problem_body["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"turns": "20"}, "turns"),
        ({"turns": 0}, "turns"),
        ({"turns": 201}, "turns"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"turns": True}, "turns"),
        ({"character_ids": ["ilse-varn"]}, "character_ids"),
        ({"character_ids": [f"c{i}" for i in range(9)]}, "character_ids"),
        ({"character_ids": ["ilse-varn", "bram-holt", "wren-aldane", "Bad Id"]}, "character_ids.3"),
        ({"character_ids": ["ilse-varn", "ilse-varn"]}, "character_ids"),
        ({"character_ids": "ilse-varn"}, "character_ids"),
        ({"priority": "urgent"}, "priority"),
        ({"mode": "later"}, "mode"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_simulation_requests_are_422_with_the_field(
    client: EngineClient, change: dict[str, object], field: str
) -> None:
    body = await problem(await client.post("/v1/simulations", json={**SIEGE, **change}), 422)
    assert field in fields(body)
    assert body["type"].endswith("/validation")


async def test_an_integer_written_with_a_fraction_of_zero_is_an_integer(
    client: EngineClient,
) -> None:
    as_float = await client.post("/v1/simulations", json={**SIEGE, "turns": 20.0, "seed": 7.0})
    as_int = await client.post("/v1/simulations", json=SIEGE)
    assert as_float.status == as_int.status == 200, await as_float.text()
    assert await as_float.read() == await as_int.read()


async def test_an_integer_written_with_a_fraction_is_never_read_as_another_one(
    client: EngineClient,
) -> None:
    exact = b'{"character_ids": ["ilse-varn", "seren-ashdown"], "seed": 9007199254740991.0}'
    assert (await client.post("/v1/simulations", data=exact, headers=JSON)).status == 200
    # 2**53 + 1 as a double is 2**53: it would run, and name, another simulation than asked.
    inexact = exact.replace(b"9007199254740991.0", b"9007199254740993.0")
    body = await problem(await client.post("/v1/simulations", data=inexact, headers=JSON), 422)
    assert fields(body) == {"seed"}
    as_integer = inexact.replace(b"9007199254740993.0", b"9007199254740993")
    simulated = await client.post("/v1/simulations", data=as_integer, headers=JSON)
    assert (await simulated.json())["request"]["seed"] == 2**53 + 1


@pytest.mark.parametrize("body", [b"[]", b"null", b'"text"', b""])
async def test_a_body_that_is_not_an_object_is_422(client: EngineClient, body: bytes) -> None:
    await problem(await client.post("/v1/simulations", data=body, headers=JSON), 422)


async def test_unknown_content_in_a_simulation_is_404_on_the_field(client: EngineClient) -> None:
    missing_character = {**SIEGE, "character_ids": ["ilse-varn", "nobody"]}
    body = await problem(await client.post("/v1/simulations", json=missing_character), 404)
    assert fields(body) == {"character_ids.1"}
    body = await problem(
        await client.post("/v1/simulations", json={**SIEGE, "campaign_id": "nowhere"}), 404
    )
    assert fields(body) == {"campaign_id"}


async def test_oversized_bodies_are_413(client: EngineClient) -> None:
    big = b'{"name": "' + b"x" * 5000 + b'"}'
    await problem(await client.post("/v1/characters", data=big, headers=JSON), 413)


async def test_oversized_chunked_bodies_are_413(client: EngineClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    await problem(await client.post("/v1/characters", data=chunks(), headers=JSON), 413)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_a_write_that_is_not_json_is_415(
    client: EngineClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"name": "Ada", "faction": "Guild", "archetype": "scholar"}'
    response = await client.post("/v1/characters", data=body, headers=headers)
    await problem(response, 415)
    assert (await client.get("/v1/characters/ada")).status == 404


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",  # charset names are case-insensitive
        "application/x+json",
    ],
)
async def test_json_media_types_are_accepted(client: EngineClient, content_type: str) -> None:
    body = b'{"name": "Ada", "faction": "Guild", "archetype": "scholar"}'
    response = await client.post(
        "/v1/characters", data=body, headers={"Content-Type": content_type}
    )
    assert response.status == 201, await response.text()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": "Ada", "name": "Bea", "faction": "Guild", "archetype": "scholar"}', "name"),
        (
            b'{"name": "Ada", "faction": "Guild", "archetype": "scholar",'
            b' "stats": {"agility": 1, "agility": 2}}',
            "stats.agility",
        ),
        (
            b'{"name": "Ada", "faction": "Guild", "archetype": "scholar", "relationships":'
            b' [{"target": "bea", "affinity": 1, "target": "cy"}]}',
            "relationships.0.target",
        ),
    ],
)
async def test_duplicate_json_keys_are_422_on_the_key(
    client: EngineClient, body: bytes, field: str
) -> None:
    response = await client.post("/v1/characters", data=body, headers=JSON)
    assert fields(await problem(response, 422)) == {field}


async def test_a_duplicate_json_key_is_listed_with_the_bodys_other_invalid_fields(
    client: EngineClient,
) -> None:
    body = b'{"name": "Ada", "name": "Bea", "faction": "Guild", "archetype": "nope"}'
    response = await client.post("/v1/characters", data=body, headers=JSON)
    assert fields(await problem(response, 422)) == {"name", "archetype"}


async def test_a_request_caught_by_a_stopped_scheduler_is_503(client: EngineClient) -> None:
    await client.app[SCHEDULER].stop(0)
    response = await client.post("/v1/simulations", json={**SIEGE, "seed": 99})
    body = await problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert "shutting down" in body["detail"]


async def test_unknown_routes_and_ids_are_404(client: EngineClient) -> None:
    await problem(await client.get("/v1/heroes"), 404)
    await problem(await client.get("/v1/characters/nobody"), 404)
    await problem(await client.get("/v1/simulations/not-an-id"), 404)
    # An id with a newline after its 64 digits is no id either.
    body = await problem(await client.get(f"/v1/simulations/{'a' * 64}%0A"), 404)
    assert "64 lower-case hex digits" in body["detail"]


async def test_wrong_method_is_405_with_allow(client: EngineClient) -> None:
    response = await client.patch("/v1/characters/ilse-varn")
    await problem(response, 405)
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD", "PUT", "DELETE"}


async def test_unexpected_errors_are_500_without_internals(
    client: EngineClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(kind: AnyKind, document_id: str) -> bytes:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(client.app[CONTENT], "document_json", broken)  # a fault, injected
    body = await problem(await client.get("/v1/characters/ilse-varn"), 500)
    assert "secret" not in str(body)
    assert "secret internal detail" in caplog.text  # logged for operators


async def test_a_busy_database_is_503(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await engine_client(aiohttp_client, tmp_path, db_pool_size=1, db_acquire_timeout=0.2)
    async with client.app[DB].acquire():
        response = await client.get("/v1/characters")
        body = await problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert "busy" in body["detail"]


async def test_a_write_the_database_lock_holds_up_too_long_is_503(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await engine_client(aiohttp_client, tmp_path)
    document = await (await client.get("/v1/characters/ilse-varn")).json()
    del document["id"], document["version"]
    # Another process holds SQLite's write lock past the busy timeout (an L3 maintenance step,
    # a backup): the write gives up, as with a busy pool, instead of failing as a bug.
    other = sqlite3.connect(tmp_path / DATABASE_FILE)
    try:
        other.execute("BEGIN IMMEDIATE")
        response = await client.put("/v1/characters/ilse-varn", json=document)
        body = await problem(response, 503)
    finally:
        other.rollback()
        other.close()
    assert response.headers["Retry-After"] == "1"
    assert "busy" in body["detail"]


def _character(name: str) -> bytes:
    return json.dumps({"name": name, "faction": "Wire", "archetype": "scout"}).encode()


def _two_gzip_members(data: bytes) -> bytes:
    return gzip.compress(data[:9]) + gzip.compress(data[9:])


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("gzip", _two_gzip_members),  # one gzip body may hold several members
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),  # without zlib's header, as some clients send it
        ("identity", bytes),
        ("gzip, identity", gzip.compress),
    ],
)
async def test_a_body_in_gzip_or_deflate_is_decoded(
    client: EngineClient, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    headers = {**JSON, "Content-Encoding": coding}
    created = await client.post("/v1/characters", data=encode(_character("Coded")), headers=headers)
    assert created.status == 201, await created.text()
    assert (await created.json())["faction"] == "Wire"


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br", "chunked", "gzip, gzip"])
async def test_a_body_in_another_coding_is_415_naming_those_accepted(
    client: EngineClient, coding: str
) -> None:
    headers = {**JSON, "Content-Encoding": coding}
    answer = await client.post("/v1/characters", data=_character("Coded"), headers=headers)
    body = await problem(answer, 415)
    assert body["type"].endswith("/unsupported-content-coding")
    assert answer.headers["Accept-Encoding"] == "gzip, deflate"
    assert (await client.get("/v1/characters/coded")).status == 404  # nothing was stored


GZIPPED = gzip.compress(_character("Coded"))


@pytest.mark.parametrize(
    ("coding", "data", "detail"),
    [
        ("gzip", GZIPPED[:-4], "ends before its gzip data does"),  # the trailer's length cut
        ("gzip", GZIPPED[:20], "ends before its gzip data does"),
        ("gzip", b"", "ends before its gzip data does"),
        ("gzip", GZIPPED + b"junk", "is not valid gzip data"),  # not a second member
        ("gzip", b"\x1f\x8b\x08\x00garbagegarbage", "is not valid gzip data"),
        ("deflate", zlib.compress(_character("Coded"))[:-2], "ends before its deflate data does"),
        ("deflate", zlib.compress(_character("Coded")) + b"x", "goes on after its deflate data"),
        ("gzip", _character("Coded"), "is not valid gzip data"),  # says gzip, is not
    ],
)
async def test_a_body_its_coding_cannot_undo_whole_is_400(
    client: EngineClient, coding: str, data: bytes, detail: str
) -> None:
    headers = {**JSON, "Content-Encoding": coding}
    body = await problem(await client.post("/v1/characters", data=data, headers=headers), 400)
    assert body["type"].endswith("/undecodable-body")
    assert detail in body["detail"]


async def test_a_body_over_the_limit_once_decoded_is_413(client: EngineClient) -> None:
    padded = json.dumps(
        {"name": "Bomb", "faction": "Wire", "archetype": "scout", "description": " " * 10_000}
    ).encode()
    bomb = gzip.compress(padded)
    assert len(bomb) < 4096 < len(padded)  # the client's fixture allows 4096 bytes
    headers = {**JSON, "Content-Encoding": "gzip"}
    body = await problem(await client.post("/v1/characters", data=bomb, headers=headers), 413)
    assert "decoded" in body["detail"]
