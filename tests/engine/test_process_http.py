"""The HTTP edge of a real engine process: what clients that misbehave on the wire get back."""

import asyncio
import gzip
import json
from dataclasses import dataclass

import aiohttp

from .api import metric_samples, until
from .processes import EngineProcess, EngineProcesses

DURATION_COUNT = "novel_engine_http_request_duration_seconds_count"
# Well within aiohttp's keep-alive timeout (an hour): a connection the engine closes, not one idle.
CLOSED_AT_ONCE_SECONDS = 5.0


async def raw_exchange(engine: EngineProcess, request: bytes, *, close: bool = False) -> bytes:
    """Send ``request`` bytes on a new connection; what the engine answers until it closes.

    With ``close`` the client closes its side right after sending (an aborted upload).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    try:
        writer.write(request)
        await writer.drain()
        if close:
            return b""
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        await writer.wait_closed()


def assert_no_error_logged(engine: EngineProcess) -> None:
    """A client's fault is logged at DEBUG at most: no ERROR line, no traceback."""
    log = engine.log()
    assert "Traceback" not in log
    assert " ERROR " not in log


async def counted_statuses(
    session: aiohttp.ClientSession, engine: EngineProcess, route: str, method: str
) -> dict[str, float]:
    """Status classes with a non-zero request count for one route and method."""
    async with session.get(engine.url + "/metrics") as response:
        samples = metric_samples(await response.text(), DURATION_COUNT)
    wanted = f'{{method="{method}",route="{route}",status_class='
    return {
        labels[len(wanted) : -1]: n
        for labels, n in samples.items()
        if labels.startswith(wanted) and n
    }


async def test_an_aborted_upload_is_a_client_error_without_a_traceback(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("aborted")
    await engine.ready(session)
    await raw_exchange(
        engine,
        b"POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        b'Content-Length: 5000\r\n\r\n{"a": 1',  # 4993 bytes of the body never come
        close=True,
    )

    async def counted() -> bool:
        return bool(await counted_statuses(session, engine, "/v1/characters", "POST"))

    await until(counted)
    assert await counted_statuses(session, engine, "/v1/characters", "POST") == {'"4xx"': 1.0}
    assert_no_error_logged(engine)


async def test_a_body_trickling_past_the_body_timeout_is_a_408_saying_connection_close(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("trickle", "--body-timeout", "1")
    await engine.ready(session)
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    body = b'{"name": "Slow", "faction": "Wire", "archetype": "scout"}'
    writer.write(
        b"POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    answered = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    for byte in body[:-1]:  # a byte every 0.2 s, never the last: the body would take 11 s
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.wait([answered], timeout=0.2)
        if answered.done():
            break
    head = (await asyncio.wait_for(answered, 30)).lower()
    assert head.startswith(b"http/1.1 408"), head
    assert b"\r\nconnection: close" in head
    length = int(head.partition(b"content-length: ")[2].partition(b"\r\n")[0])
    problem = json.loads(await reader.readexactly(length))
    writer.close()
    assert problem["detail"] == "the request body did not arrive whole within 1 s"
    assert (await session.get(engine.url + "/v1/characters/slow")).status == 404  # not created
    assert await counted_statuses(session, engine, "/v1/characters", "POST") == {'"4xx"': 1.0}
    assert_no_error_logged(engine)


async def test_a_body_its_content_encoding_cannot_decode_is_a_problem_without_a_traceback(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("encoding")
    await engine.ready(session)
    corrupt_gzip = b"\x1f\x8b\x08\x00garbagegarbage"
    # aiohttp's own decoding, which the engine's server turns off, took a cut one for a whole.
    cut_gzip = gzip.compress(b'{"name": "Cut", "faction": "Wire", "archetype": "scout"}')[:-4]
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    for data, detail in (
        (corrupt_gzip, "the request body is not valid gzip data"),
        (cut_gzip, "the request body ends before its gzip data does"),
    ):
        async with session.post(
            engine.url + "/v1/characters", data=data, headers=headers
        ) as answer:
            assert answer.status == 400
            assert (await answer.json(content_type="application/problem+json"))["detail"] == detail
    # A route that reads no body: aiohttp reads the rest, as sent, after the answer.
    async with session.get(engine.url + "/healthz", data=corrupt_gzip, headers=headers) as response:
        assert response.status == 200
    async with session.get(engine.url + "/healthz") as response:
        assert response.status == 200  # and the server goes on serving
    assert_no_error_logged(engine)


async def test_expectations_are_answered_as_problems_and_a_too_large_body_before_it_is_sent(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("expect")
    await engine.ready(session)
    unknown = await raw_exchange(
        engine,
        b"GET /healthz HTTP/1.1\r\nHost: engine\r\nExpect: a-miracle\r\nConnection: close\r\n\r\n",
    )
    head, _, body = unknown.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 417 ")
    assert b"\r\ncontent-type: application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 417
    # The client waits for 100 Continue before sending 2 MB: it learns at once it need not.
    too_large = await raw_exchange(
        engine,
        b"POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n",
    )
    assert too_large.startswith(b"HTTP/1.1 413 "), too_large[:40]  # no 100 Continue first
    assert b"application/problem+json" in too_large
    # A client that sends no body after a final answer must not have its next request read as
    # that body: the answer says the connection closes.
    for expectation in (b"100-continue", b"a-miracle"):
        head = await answer_head(
            engine,
            b"POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
            b"Expect: " + expectation + b"\r\nContent-Length: 2000000\r\n\r\n",
        )
        assert b"\r\nconnection: close\r\n" in head.lower(), head
        # One that sends its body at once, without waiting for the answer (as RFC 9110 allows,
        # and Python's http.client does), reads that answer too: no reset under its upload.
        answer = await raw_exchange(
            engine,
            b"POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
            b"Expect: " + expectation + b"\r\nContent-Length: 8000000\r\n\r\n" + b" " * 8_000_000,
        )
        assert answer.startswith(b"HTTP/1.1 41"), answer[:40]
    # Repeated lines make one list of expectations: one the server does not meet is a 417.
    head = await answer_head(
        engine,
        b"POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nExpect: a-miracle\r\nContent-Length: 2\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 417 "), head
    assert_no_error_logged(engine)


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: engine\r\n\r\n"


@dataclass
class KeepAliveConnection:
    """One connection to an engine, for request after request."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, engine: EngineProcess) -> "KeepAliveConnection":
        return cls(*await asyncio.open_connection("127.0.0.1", engine.port))

    async def exchange(self, request: bytes) -> bytes:
        """Send ``request``; the status line and headers of its answer (its body read)."""
        self.writer.write(request)
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        await self.reader.readexactly(length)
        return head


async def answer_head(engine: EngineProcess, request: bytes) -> bytes:
    """The status line and headers of the answer to ``request``, on a new connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_body_in_a_transfer_coding_the_engine_does_not_know_is_a_501(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("transfer-coding")
    await engine.ready(session)
    body = gzip.compress(b'{"name": "Zipped", "faction": "Wire", "archetype": "scout"}')
    answer = await raw_exchange(
        engine,
        b"POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n",
    )
    head, _, problem = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 "), head
    # Empty list elements do not count (RFC 9110, section 5.6.1).
    answer = await raw_exchange(
        engine,
        b"POST /v1/characters HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: , chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 422 "), answer[:40]  # read, and found wanting
    assert json.loads(problem)["detail"] == "the only transfer coding this server knows is chunked"
    async with session.get(engine.url + "/v1/characters/zipped") as response:
        assert response.status == 404  # nothing was created from the bytes
    assert_no_error_logged(engine)


MARKER = "zq" * 4600  # 9,200 bytes: over aiohttp's 8,190-byte line limit
MALFORMED = {
    "long URL": f"GET /v1/characters?{MARKER} HTTP/1.1\r\nHost: engine\r\n\r\n",
    "long header": f"GET /healthz HTTP/1.1\r\nHost: engine\r\nX-Pad: {MARKER}\r\n\r\n",
    "too many headers": "GET /healthz HTTP/1.1\r\nHost: engine\r\n"
    + "".join(f"X-zq-{n}: zq\r\n" for n in range(200))
    + "\r\n",
    "unknown method": "ZQZQ /healthz HTTP/1.1\r\nHost: engine\r\n\r\n",
}


async def test_requests_the_parser_refuses_are_problems_that_quote_nothing(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("malformed")
    await engine.ready(session)
    for name, request in MALFORMED.items():
        answer = await raw_exchange(engine, request.encode())
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400", (name, head)
        assert b"\r\ncontent-type: application/problem+json" in head.lower(), (name, head)
        problem = json.loads(body)
        assert problem["status"] == 400, (name, problem)
        assert b"zq" not in body.lower(), (name, body)  # the input is not echoed
    async with session.get(engine.url + "/healthz") as response:
        assert response.status == 200  # and the server goes on serving
    assert_no_error_logged(engine)


async def test_after_sigterm_the_engine_is_unready_but_serving_until_the_delay_ends(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("stopping", "--shutdown-delay", "600")
    await engine.ready(session)
    keep_alive = await KeepAliveConnection.open(engine)
    assert b"connection: close" not in (await keep_alive.exchange(HEALTHZ)).lower()
    engine.terminate()

    async def unready() -> bool:
        async with session.get(engine.url + "/readyz") as response:
            return response.status == 503

    await until(unready)
    async with session.get(engine.url + "/v1/characters/ilse-varn") as response:
        assert response.status == 200  # still served: only readiness changed
    async with session.get(engine.url + "/readyz") as response:
        assert "draining" in (await response.json(content_type=None))["detail"]
    # A connection opened before the signal is told to close after its next response.
    assert b"connection: close" in (await keep_alive.exchange(HEALTHZ)).lower()
    assert await asyncio.wait_for(keep_alive.reader.read(), CLOSED_AT_ONCE_SECONDS) == b""
    keep_alive.writer.close()
    engine.terminate()  # a second signal ends the delay
    assert await engine.exit_code() == 0


async def test_a_request_target_that_is_not_a_path_is_a_problem(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    engine = engines.start("target")
    await engine.ready(session)
    for request, status in (
        (b"OPTIONS * HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n", 404),
        (b"CONNECT engine:443 HTTP/1.1\r\nHost: engine:443\r\nConnection: close\r\n\r\n", 404),
        # aiohttp's own Expect handler answers these: its text quotes the header
        (
            b"OPTIONS * HTTP/1.1\r\nHost: engine\r\nExpect: zq\r\nContent-Length: 1\r\n"
            b"Connection: close\r\n\r\n",
            417,
        ),
    ):
        head, _, body = (await raw_exchange(engine, request)).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), (request, head)
        assert b"\r\ncontent-type: application/problem+json" in head.lower(), (request, head)
        assert json.loads(body)["status"] == status
        assert b"zq" not in body, body  # the input is not echoed
    # The 417 closes the connection, as the routes' does (the client sends no body after it).
    refused = await answer_head(
        engine,
        b"OPTIONS * HTTP/1.1\r\nHost: engine\r\nExpect: zq\r\nContent-Length: 9\r\n\r\n",
    )
    assert refused.startswith(b"HTTP/1.1 417 "), refused
    assert b"\r\nconnection: close\r\n" in refused.lower(), refused
    assert_no_error_logged(engine)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: its status and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, await asyncio.wait_for(reader.readexactly(length), 10)


async def test_a_connection_waiting_past_the_keep_alive_timeout_closes_whatever_it_holds(
    engines: EngineProcesses, session: aiohttp.ClientSession
) -> None:
    """Trickled headers, a partial request after a whole one: closed at the timeout (aiohttp's
    own is an hour). A connection used again within it stays, late body bytes included."""
    engine = engines.start("keepalive", "--keep-alive-timeout", "2")
    await engine.ready(session)
    healthz = b"GET /healthz HTTP/1.1\r\nHost: engine\r\n\r\n"

    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: engine\r\n")  # and the rest never comes
    for _ in range(4):  # each byte in time, the whole far too slow
        await asyncio.sleep(0.4)
        writer.write(b"X")
    assert await asyncio.wait_for(reader.read(), CLOSED_AT_ONCE_SECONDS) == b""
    writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    writer.write(healthz + b"GET /heal")  # a whole request, and the start of the next
    assert (await read_response(reader))[0] == 200
    assert await asyncio.wait_for(reader.read(), CLOSED_AT_ONCE_SECONDS) == b""
    writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    body = b'{"name": "Zed"}'
    writer.write(
        b"POST /v1/nowhere HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    assert (await read_response(reader))[0] == 404  # answered before its body came
    writer.write(body)
    for _ in range(3):  # the same connection, used again within the timeout each time
        await asyncio.sleep(1)
        writer.write(healthz)
        assert (await read_response(reader))[0] == 200
    writer.close()
    assert_no_error_logged(engine)
