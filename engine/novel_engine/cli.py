"""`novel-engine` command line: load settings, serve until SIGTERM/SIGINT, drain, exit."""

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from novel_engine.app import create_app
from novel_engine.config import ConfigError, Settings, load_settings
from novel_engine.keys import DRAIN

log = logging.getLogger("novel_engine")


def _stop_on_signal(app: web.Application) -> None:
    """Mark the app draining (readiness fails at once), then start aiohttp's graceful exit."""
    app[DRAIN].begin()
    log.info("stop signal received: draining for up to %.1f s", app[DRAIN].timeout)
    raise web.GracefulExit()


async def _install_signal_handlers(app: web.Application) -> None:
    # Replaces run_app's handlers, which would go straight to shutdown without marking drain.
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop_on_signal, app)


def serve(settings: Settings) -> None:
    app = create_app(settings)
    app.on_startup.append(_install_signal_handlers)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.drain_timeout,
        access_log=None,
        print=lambda message: log.info("%s", message),
    )
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings = load_settings(argv)
    except ConfigError as error:
        print(f"novel-engine: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(settings)
