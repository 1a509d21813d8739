"""The HTTP server under the app: requests aiohttp's parser refuses also answer problem+json,
and a request still uploading its body when the engine stops gets to finish.

aiohttp answers a request it cannot parse (a line over 8,190 bytes, too many header fields, an
unknown method, a malformed URL) before any route or middleware runs, with a text/plain body
that quotes the input, and logs an ERROR traceback each time. Here such a request gets a
problem+json 400 that quotes nothing, logged at DEBUG only: malformed input is the client's
error, and must not be a way to flood the log. A request whose target is not a path (`OPTIONS
*`, CONNECT's `host:port`) reaches no route, not even the catch-all, so aiohttp's text/plain
404 (or 417, quoting an Expect header) would answer it; here it is a problem+json that quotes
nothing (outside the request metrics, as no route ran), and the 417 closes the connection as the
routes' does. (Such a request's `Expect: 100-continue` is met as aiohttp meets it: 100 Continue,
then the answer, with any body read and dropped.)

From the stop signal on, each response closes its connection, so that clients do not send
their next request on a connection the drain is about to close. At the drain aiohttp closes
every connection, and a closed connection drops the bytes that still arrive: a request whose
head or body was on its way never got an answer. Here only idle connections close then; one
with a request in progress, or with the first bytes of one, closes after its response, and the
drain waits for the requests still arriving as for those in flight (within its budget).
"""

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, InvalidURLError, LineTooLong

from novel_engine.keys import DRAIN
from novel_engine.middlewares.body_limit import refusal
from novel_engine.problems import problem_for, problem_response

log = logging.getLogger(__name__)

_MALFORMED = (
    (LineTooLong, "the request line or a header field is too long"),
    (BadHttpMethod, "the request method is not one this server knows"),
    (InvalidURLError, "the request target is not a valid URL"),
    (BadHttpMessage, "the request is not valid HTTP/1.1"),
)


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's per-connection handler, with parse errors answered as problems, that can be
    told to close once its request in progress is answered."""

    closing = False  # set when a stop is coming: each response closes its connection
    engine_server: "_EngineServer"
    # Bytes came, since the last response began, that were no part of the last request's body:
    # a request on its way, though its head may not have arrived whole.
    request_begun = False
    last_body: StreamReader | None = None

    def data_received(self, data: bytes) -> None:
        # (aiohttp reads the rest of a body its handler left after the response, not in progress,
        # and calls this with no bytes to parse what it has buffered)
        if (
            data
            and not self._request_in_progress
            and (self.last_body is None or self.last_body.is_eof())
        ):
            self.request_begun, self.last_body = True, None
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.last_body = None  # (it refers back to this handler)
        super().connection_lost(exc)

    @property
    def request_arriving(self) -> bool:
        """A request has begun to arrive that aiohttp does not handle yet (its head is partial)."""
        return self.request_begun and not self._request_in_progress

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Here, not when the handler was made: the server lists the connection from now on,
        # and a stop signal handled in between would not have found it.
        if self.engine_server.keep_alive_ended:
            self.closing = True

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        self.request_begun, self.last_body = False, request.content
        # Raised where no route's layers catch it. (A plain Response, what the routes answer,
        # is no exception: tested first, as isinstance on aiohttp's response classes is slow.)
        if (
            type(resp) is not web.Response
            and isinstance(resp, web.HTTPException)
            and resp.status >= 400
        ):
            # (a 417: from aiohttp's Expect handler, for a target that is no path)
            resp = refusal(resp) if resp.status == 417 else problem_for(resp) or resp
        if self.closing:
            resp.force_close()  # says Connection: close, and aiohttp closes after it
        finished = await super().finish_response(request, resp, start_time)
        if self.closing:  # (the shutdown came while the response was being written)
            resp.force_close()
        return finished

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        detail = next((text for kind, text in _MALFORMED if isinstance(exc, kind)), None)
        if detail is None or status >= 500:
            return super().handle_error(request, status, exc, message)
        log.debug("malformed request from %s: %s", request.remote, type(exc).__name__)
        response = problem_response(status, detail, kind="malformed-request")
        response.force_close()  # the parser's state is lost: this connection cannot go on
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # After the response aiohttp reads what is left of an unread body, which raises here if
        # that body ends early: the client's error, already answered.
        if isinstance(kwargs.get("exc_info"), web.RequestPayloadError):
            log.debug("unreadable rest of a request body: %s", kwargs["exc_info"])
            return
        super().log_exception(*args, **kwargs)


class _EngineServer(web.Server):
    keep_alive_ended = False

    def __call__(self) -> web.RequestHandler:
        # What web.Server.__call__ does, with our handler class.
        handler = ProblemRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.engine_server = self
        return handler

    def end_keep_alive(self) -> None:
        self.keep_alive_ended = True
        for connection in self.connections:
            if isinstance(connection, ProblemRequestHandler):
                connection.closing = True

    def pre_shutdown(self) -> None:
        for connection in self.connections:
            # (no public flag) a request in progress, whose body may still be arriving
            if isinstance(connection, ProblemRequestHandler) and (
                connection._request_in_progress or connection.request_arriving
            ):
                connection.closing = True
            else:
                # (close() would leave an idle connection open until aiohttp ends them all)
                connection.force_close()

    def requests_arriving(self) -> bool:
        """Whether a connection holds a request whose head has not all arrived."""
        return any(
            isinstance(connection, ProblemRequestHandler) and connection.request_arriving
            for connection in self.connections
        )


# What the engine app needs of any server that runs it: request bodies reach it as sent, to be
# decoded by the app (novel_engine.routes.body), which aiohttp's decoding would do laxly.
SERVER_OPTIONS: Final[Mapping[str, Any]] = {"auto_decompress": False}


class EngineRunner(web.AppRunner):
    """web.AppRunner with SERVER_OPTIONS, whose server answers malformed requests with
    problem+json and lets a request in progress at shutdown finish."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **SERVER_OPTIONS, **kwargs)
        self._keep_alive_ended = False

    def end_keep_alive(self) -> None:
        """From now on each response closes its connection (`Connection: close`): a client
        opens a new one for its next request (to another replica, once this one's readiness has
        failed) rather than reuse one that the drain would close under it as it sends."""
        self._keep_alive_ended = True
        if isinstance(self.server, _EngineServer):
            self.server.end_keep_alive()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # starts the app and applies the runner's options
        engine_server = _EngineServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        engine_server.keep_alive_ended = self._keep_alive_ended
        if DRAIN in self.app:
            self.app[DRAIN].requests_arriving = engine_server.requests_arriving
        return engine_server
