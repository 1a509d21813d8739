"""Operational routes: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from typing import Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
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


def accepts_gzip(request: web.Request) -> bool:
    """Whether Accept-Encoding gives gzip, or ``*`` when it does not name gzip, a weight above
    0 (RFC 9110, section 12.5.3). aiohttp's own test finds "gzip" in ``gzip;q=0``."""
    weights: dict[str, float] = {}
    for element in header_elements(request, hdrs.ACCEPT_ENCODING):
        coding, *parameters = (part.strip() for part in element.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # a weight that cannot be read says yes to nothing
        weights[coding] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """prometheus_client's exposition (its format chosen by Accept), gzipped for a client that
    accepts gzip, and marked as varying with both headers."""
    exposition = make_aiohttp_handler(registry, disable_compression=True)

    async def metrics(request: web.Request) -> web.StreamResponse:
        response = await exposition(request)
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
