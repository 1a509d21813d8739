"""`novel-engine` command line: load settings, serve until SIGTERM/SIGINT, drain, exit.

The serving loop is aiohttp's AppRunner driven directly (what run_app does) so that a signal
marks the app draining before the listener closes, and so that a failed start (say, a bad
content file) still closes the resources that did start.
"""

import asyncio
import logging
import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Sequence

from aiohttp import web

from novel_engine.app import create_app
from novel_engine.config import ConfigError, Settings, load_settings, unknown_variables
from novel_engine.content.loader import ContentFileError
from novel_engine.db import DatabaseOpenError
from novel_engine.keys import DRAIN
from novel_engine.server import EngineRunner

log = logging.getLogger("novel_engine")

# After the drain (app.drain), what aiohttp gives the handlers still running (they are answering
# 503 by then) before it cancels them, and again after: the budget itself is spent by the drain.
HANDLER_GRACE_SECONDS = 2.0


class ListenError(Exception):
    """The listening socket could not be opened (address in use, not permitted, ...)."""


async def serve(settings: Settings) -> None:
    """Serve until a stop signal, then drain. Readiness fails at once; after SIGTERM the engine
    serves for shutdown_delay more seconds; then in-flight requests get up to drain_timeout,
    running tasks what is left of it."""
    app = create_app(settings)
    runner = EngineRunner(
        app,
        shutdown_timeout=HANDLER_GRACE_SECONDS,
        access_log=None,
        keepalive_timeout=settings.keep_alive_timeout,  # (aiohttp's own is an hour)
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop(signum: signal.Signals) -> None:
        if stopping.is_set():
            log.info(
                "%s received: already draining, %g s left of its budget",
                signum.name,
                round(app[DRAIN].remaining(), 1),
            )
            return
        delay = settings.shutdown_delay
        if app[DRAIN].draining or signum is not signal.SIGTERM:
            delay = 0.0  # a second signal, or Ctrl-C: drain now
        app[DRAIN].announce()
        runner.end_keep_alive()
        log.info(
            "%s received: not ready; serving %g s more, then draining for up to %g s",
            signum.name,
            delay,
            settings.drain_timeout,
        )
        loop.call_later(delay, stopping.set)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
        except OSError as error:
            raise ListenError(f"cannot serve on {settings.host}:{settings.port}: {error}") from None
        log.info("serving on http://%s:%d", settings.host, settings.port)
        await stopping.wait()
        log.info("draining")
    finally:
        await runner.cleanup()  # closes the listener, then runs the drain (app.drain)
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
    for note in unknown_variables(os.environ):
        log.warning("%s", note)
    try:
        # The process pool's forkserver puts its socket there: found now, not as 500s later.
        tempfile.gettempdir()
    except OSError as error:  # "No usable temporary directory found in [...]"
        print(f"novel-engine: temp dir: {error} (set TMPDIR)", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        asyncio.run(serve(settings))
    except ConfigError as error:  # a setting only the start could find wrong
        print(f"novel-engine: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ContentFileError as error:
        print(f"novel-engine: content: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except (DatabaseOpenError, sqlite3.DatabaseError) as error:
        # (the latter: a write at start-up or at the stop that the database refused, say a
        # full volume; the database is what the data dir holds)
        print(f"novel-engine: data_dir: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ListenError as error:
        print(f"novel-engine: {error}", file=sys.stderr)
        raise SystemExit(1) from None
