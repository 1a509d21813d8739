"""Per-request layers around each route's handler, one job each, one module each.

A layer wraps one route's handler once, when the routes are set up, and is told the route
template then, so a request pays only for the layer's own job. They are not aiohttp
middlewares on purpose: with a middleware installed, aiohttp builds the chain for every
request and adds a bookkeeping layer of its own, which cost the cached GET path more than the
three jobs themselves. Only the operations that read a body get the body-limit layer. Requests
for a path no route serves go through the metrics and problem+json layers by way of the catch-all
route that ``setup_unmatched`` adds.
"""

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler

# (the route's handler, its template) -> the handler with the layer's job around it
RequestLayer = Callable[[Handler, str], Handler]
# A route's answer to an Expect header: None to go on to the handler, else the response.
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def layered(handler: Handler, route: str, layers: Sequence[RequestLayer]) -> Handler:
    """``handler`` of the route ``route`` inside ``layers``, the first one outermost."""
    for layer in reversed(layers):
        handler = layer(handler, route)
    return handler


def header_elements(request: web.BaseRequest, name: str) -> list[str]:
    """The elements of the comma-separated list header ``name``, its lines together, in lower
    case; empty elements do not count (RFC 9110, section 5.6.1)."""
    lines = request.headers.getall(name, ())
    return [
        element.strip().lower() for line in lines for element in line.split(",") if element.strip()
    ]
