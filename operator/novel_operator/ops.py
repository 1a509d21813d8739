"""The operator's own HTTP endpoints: /metrics (Prometheus) and /healthz (liveness)."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from novel_operator.metrics import OperatorMetrics


def create_ops_app(metrics: OperatorMetrics, healthy: Callable[[], bool]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        if healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="reconcile loop is not running\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app


class ListenError(Exception):
    """The ops endpoints could not listen where they were told to."""


@asynccontextmanager
async def serve(app: web.Application, host: str, port: int) -> AsyncIterator[None]:
    """Serve `app` on host:port while the context is open."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:  # in use, not permitted, no such address or name
            reason = error.strerror or str(error)
            message = f"cannot serve /metrics and /healthz on {host}:{port}: {reason}"
            raise ListenError(message) from None
        yield
    finally:
        await runner.cleanup()
