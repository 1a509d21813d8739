"""Turns every error raised while serving a request into a problem+json response."""

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from novel_engine.middlewares import RequestLayer
from novel_engine.problems import internal_error, problem_for
from novel_engine.throttled_log import ThrottledLog

log = logging.getLogger(__name__)


def problem_responses() -> RequestLayer:
    # A full or read-only data volume is no client's doing, and no bug: whoever runs the engine
    # must hear of it, once a minute however many writes it refuses.
    storage_refusals = ThrottledLog(log)

    def problems(handler: Handler, route: str) -> Handler:
        async def problems_layer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except Exception as error:
                if isinstance(error, web.HTTPException) and error.status < 400:
                    raise  # redirects and the like are answers, not errors
                response = problem_for(error)
                if response is None:
                    # Logged with the traceback here; the client only learns that it happened.
                    log.exception("unexpected error serving %s %s", request.method, request.path)
                    return internal_error()
                if response.status == 507:
                    storage_refusals.warning(
                        "storage",
                        "could not store what %s %s sent (answered 507): %s",
                        request.method,
                        request.path,
                        error,
                    )
                return response

        return problems_layer

    return problems
