"""Operational routes: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from typing import Literal

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import BaseModel, ConfigDict

from novel_engine.content.canonical import canonical_json
from novel_engine.keys import DB, DRAIN, OPENAPI, SCHEDULER
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
            make_aiohttp_handler(registry),
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
