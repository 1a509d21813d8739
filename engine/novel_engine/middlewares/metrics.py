"""Records request latency by route template and the number of requests in flight."""

import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from novel_engine.drain import DrainState
from novel_engine.metrics import EngineMetrics, method_label, status_class
from novel_engine.middlewares import RequestLayer

# Scrapes and probes are not load: they stay out of the in-flight gauge the autoscaler reads.
NOT_IN_FLIGHT = frozenset({"/metrics", "/healthz", "/readyz"})


def request_metrics(metrics: EngineMetrics, drain: DrainState) -> RequestLayer:
    # Hot path: a plain counter (the drain's, which waits for it) read at scrape time, and the
    # lock-free latency series' observe bound once per route, method and status (closed sets).
    metrics.http_in_flight.set_function(lambda: drain.in_flight)
    clock = time.perf_counter

    def measured(handler: Handler, route: str) -> Handler:
        counted = route not in NOT_IN_FLIGHT
        observers: dict[tuple[str, int], Callable[[float], None]] = {}

        async def metrics_layer(request: web.Request) -> web.StreamResponse:
            if counted:
                drain.in_flight += 1
            started = clock()
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
                    drain.in_flight -= 1
                observe = observers.get((request.method, status))
                if observe is None:
                    method = method_label(request.method)
                    series = metrics.http_request_duration.labels(
                        route, method, status_class(status)
                    )
                    observe = series.observe
                    if method == request.method:  # only the closed set of methods is kept
                        observers[method, status] = observe
                observe(clock() - started)

        return metrics_layer

    return measured
