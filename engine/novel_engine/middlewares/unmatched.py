"""Requests no route serves: 404, or 405 with Allow when the path has routes for other methods.

A catch-all route answers them, so that they pass through the layers every request does
(problem+json, metrics under the route ``none``). The router reaches it last: it
tries the routes indexed under a request's longer path prefixes first, and this one sits
under ``/``.
"""

from collections.abc import Sequence

from aiohttp import web

from novel_engine.metrics import UNMATCHED_ROUTE
from novel_engine.middlewares import ExpectHandler, RequestLayer, layered

CATCH_ALL_PATH = "/{path:.*}"


async def unmatched(request: web.Request) -> web.StreamResponse:
    catch_all = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not catch_all:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def setup_unmatched(
    app: web.Application, layers: Sequence[RequestLayer], expect_handler: ExpectHandler
) -> None:
    """Add the catch-all route; call it after every other route is added."""
    handler = layered(unmatched, UNMATCHED_ROUTE, layers)
    app.router.add_route("*", CATCH_ALL_PATH, handler, expect_handler=expect_handler)
