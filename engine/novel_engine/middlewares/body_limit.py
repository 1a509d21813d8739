"""Refuses a request whose declared body is over the limit before any of it is read.

Bodies without a Content-Length (chunked) are bounded by the app's ``client_max_size``, which
raises the same 413 when a handler reads past it.
"""

from aiohttp import web
from aiohttp.typedefs import Handler

from novel_engine.middlewares import RequestLayer


def body_limit(max_bytes: int) -> RequestLayer:
    def limited(handler: Handler, route: str) -> Handler:
        async def body_limit_layer(request: web.Request) -> web.StreamResponse:
            declared = request.content_length
            if declared is not None and declared > max_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=declared)
            return await handler(request)

        return body_limit_layer

    return limited
