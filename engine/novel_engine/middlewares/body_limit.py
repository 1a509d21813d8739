"""Refuses a request whose declared body is over the limit before any of it is read, and one
whose body comes in a transfer coding the server does not know.

Bodies without a Content-Length (chunked) are bounded by the app's ``client_max_size``, which
raises the same 413 when a handler reads past it. A client that asks first (``Expect:
100-continue``) gets the 413 before it sends the body.
"""

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.typedefs import Handler

from novel_engine.middlewares import ExpectHandler, RequestLayer, header_elements
from novel_engine.problems import http_problem


def body_limit(max_bytes: int) -> RequestLayer:
    def limited(handler: Handler, route: str) -> Handler:
        async def body_limit_layer(request: web.Request) -> web.StreamResponse:
            if _unknown_transfer_coding(request):
                # aiohttp reads such a body as plain chunks (RFC 9112, section 6.1: a 501).
                raise web.HTTPNotImplemented(
                    text="the only transfer coding this server knows is chunked"
                )
            declared = request.content_length
            if declared is not None and declared > max_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=declared)
            return await handler(request)

        return body_limit_layer

    return limited


def _unknown_transfer_coding(request: web.Request) -> bool:
    return bool(set(header_elements(request, hdrs.TRANSFER_ENCODING)) - {"chunked"})


def expect_continue(max_bytes: int) -> ExpectHandler:
    """The routes' ``Expect`` handler: 100 Continue only for a body the engine would take; a
    declared body over the limit gets its 413 at once, any expectation but 100-continue a 417,
    both problem+json (aiohttp's own answers are plain text). Those two close the connection
    (RFC 9110, section 10.1.1): the client may never send the body the server would otherwise
    read its next request from."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if request.version != HttpVersion11:
            return None  # HTTP/1.0 has no Expect: the body follows anyway
        if set(header_elements(request, hdrs.EXPECT)) != {"100-continue"}:
            return refusal(web.HTTPExpectationFailed())
        declared = request.content_length
        if declared is not None and declared > max_bytes:
            too_large = web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=declared)
            return refusal(too_large)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not the response's size
        return None

    return expect


def refusal(error: web.HTTPException) -> web.Response:
    """The problem answer to ``error`` for a request whose ``Expect`` was refused, closing the
    connection after it. aiohttp first reads and drops what comes of the body (for up to 10 s,
    or until the client closes): a client may send it without waiting for the answer, and
    would otherwise meet a reset before it reads that answer."""
    response = http_problem(error)
    response.force_close()
    return response
