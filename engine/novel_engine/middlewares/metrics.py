"""Records request latency by route template and the number of requests in flight."""

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Histogram

from novel_engine.metrics import UNMATCHED_ROUTE, EngineMetrics, method_label, status_class

# Scrapes and probes are not load: they stay out of the in-flight gauge the autoscaler reads.
NOT_IN_FLIGHT = frozenset({"/metrics", "/healthz", "/readyz"})


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def _metrics_middleware(metrics: EngineMetrics) -> Middleware:
    # Hot path: a plain counter read at scrape time and latency series bound once per label set
    # (route templates, methods and statuses are all closed sets) instead of locks and lookups.
    in_flight = 0
    metrics.http_in_flight.set_function(lambda: in_flight)
    durations: dict[tuple[str, str, int], Histogram] = {}

    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        route = route_template(request)
        counted = route not in NOT_IN_FLIGHT
        if counted:
            in_flight += 1
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
                in_flight -= 1
            method = method_label(request.method)
            series = durations.get((route, method, status))
            if series is None:
                series = metrics.http_request_duration.labels(route, method, status_class(status))
                durations[route, method, status] = series
            series.observe(time.perf_counter() - started)

    return metrics_middleware


def setup_metrics(app: web.Application, metrics: EngineMetrics) -> None:
    app.middlewares.append(_metrics_middleware(metrics))
