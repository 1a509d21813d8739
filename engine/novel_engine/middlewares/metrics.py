"""Records request latency by route template and the number of requests in flight."""

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from novel_engine.metrics import UNMATCHED_ROUTE, EngineMetrics

# Scrapes and probes are not load: they stay out of the in-flight gauge the autoscaler reads.
NOT_IN_FLIGHT = frozenset({"/metrics", "/healthz", "/readyz"})


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def _metrics_middleware(metrics: EngineMetrics) -> Middleware:
    in_flight = metrics.http_in_flight

    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_template(request)
        counted = route not in NOT_IN_FLIGHT
        if counted:
            in_flight.inc()
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            if counted:
                in_flight.dec()
            metrics.observe_request(route, request.method, status, time.perf_counter() - started)

    return metrics_middleware


def setup_metrics(app: web.Application, metrics: EngineMetrics) -> None:
    app.middlewares.append(_metrics_middleware(metrics))
