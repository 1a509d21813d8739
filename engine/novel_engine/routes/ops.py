"""Operational routes: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from typing import Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import BaseModel, ConfigDict

from novel_engine.content.canonical import canonical_json
from novel_engine.keys import DB, DRAIN, OPENAPI, SCHEDULER
from novel_engine.middlewares import header_elements
from novel_engine.problems import problem_response
from novel_engine.routes import Operation, Reply, json_bytes

OPENAPI_PATH = "/openapi.json"


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "ready"]


ALIVE = canonical_json({"status": "ok"})
READY = canonical_json({"status": "ready"})


async def healthz(request: web.Request) -> web.Response:
    return json_bytes(ALIVE)


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    reasons = []
    if app[DRAIN].draining:
        reasons.append("draining: the engine is shutting down")
    if DB not in app or not app[DB].is_open:
        reasons.append("the database is not open")
    if SCHEDULER not in app or not app[SCHEDULER].running:
        reasons.append("the scheduler is not running")
    if reasons:
        return problem_response(503, "; ".join(reasons), kind="not-ready")
    return json_bytes(READY)


async def openapi(request: web.Request) -> web.Response:
    return json_bytes(await request.app[OPENAPI].body())


def _weight(element: str) -> float:
    """A list element's weight, its q parameter (RFC 9110, section 12.4.2): 1 without one, 0
    when it cannot be read (a weight that cannot be read says yes to nothing)."""
    for parameter in element.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                return 0.0
            return weight if 0 <= weight <= 1 else 0.0
    return 1.0


def accepts_gzip(request: web.Request) -> bool:
    """Whether Accept-Encoding gives gzip, or ``*`` when it does not name gzip, a weight above
    0 (RFC 9110, section 12.5.3). aiohttp's own test finds "gzip" in ``gzip;q=0``."""
    weights = {
        element.split(";")[0].strip(): _weight(element)
        for element in header_elements(request, hdrs.ACCEPT_ENCODING)
    }
    return weights.get("gzip", weights.get("*", 0.0)) > 0


#: The exposition formats prometheus_client serves.
_FORMATS = ("application/openmetrics-text", "text/plain")


def exposition_accept(request: web.Request) -> str:
    """The one Accept element to hand prometheus_client: the client's most preferred format
    (heavier first, ties in the order sent, q=0 refused) that it serves, or "" for its text
    default. prometheus_client takes the first OpenMetrics element in the header, whatever the
    weights."""
    elements = [element for element in header_elements(request, hdrs.ACCEPT) if _weight(element)]
    for element in sorted(elements, key=_weight, reverse=True):  # (a stable sort)
        media_range = element.split(";")[0].strip()
        if media_range in _FORMATS:
            return element
        if media_range in ("text/*", "*/*"):
            return ""  # the text format
    return ""


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """prometheus_client's exposition (its format chosen by Accept, weights honoured), gzipped
    for a client that accepts gzip, and marked as varying with both headers."""
    exposition = make_aiohttp_handler(registry, disable_compression=True)

    async def metrics(request: web.Request) -> web.StreamResponse:
        asked = request
        if hdrs.ACCEPT in request.headers:
            headers = CIMultiDict(request.headers)
            headers[hdrs.ACCEPT] = exposition_accept(request)
            asked = request.clone(headers=headers)
        response = await exposition(asked)
        response.headers[hdrs.VARY] = "Accept, Accept-Encoding"
        if accepts_gzip(request):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    return metrics


def ops_operations(registry: CollectorRegistry) -> list[Operation]:
    return [
        Operation(
            "GET",
            "/healthz",
            healthz,
            "healthz",
            "Liveness: the process serves HTTP",
            "operations",
            {200: Reply("Alive.", (Health,))},
        ),
        Operation(
            "GET",
            "/readyz",
            readyz,
            "readyz",
            "Readiness: database open, scheduler running, not draining",
            "operations",
            {200: Reply("Ready for traffic.", (Health,))},
            problems=(503,),
            retry_after=frozenset(),  # (a probe asks again on its own schedule)
        ),
        Operation(
            "GET",
            "/metrics",
            metrics_handler(registry),
            "metrics",
            "Prometheus metrics",
            "operations",
            {
                200: Reply(
                    "Prometheus text exposition format, or OpenMetrics when the Accept header"
                    " asks for it.",
                    content_types=("text/plain", "application/openmetrics-text"),
                )
            },
        ),
        Operation(
            "GET",
            OPENAPI_PATH,
            openapi,
            "openapi",
            "This API's OpenAPI 3.1 document",
            "operations",
            {200: Reply("The OpenAPI document.", schema={"type": "object"})},
        ),
    ]
