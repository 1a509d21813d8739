"""RFC 9457 problem details: the one place where errors become ``application/problem+json``.

``problem_for(exception)`` maps every error the engine knows (HTTP errors from aiohttp, bad
request bodies, domain errors, overload) to a response; anything else is a 500 whose body says
nothing about the internals.
"""

import math
import sqlite3
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from novel_engine.content.canonical import canonical_json
from novel_engine.content.library import ReadOnlyContentError
from novel_engine.content.loader import field_path
from novel_engine.content.store import (
    ContentConflictError,
    ContentNotFoundError,
    UnknownReferenceError,
)
from novel_engine.db import PoolTimeout
from novel_engine.jobs import SharedJobsUnavailable
from novel_engine.scheduler import DeadlineExceeded, QueueFull, SchedulerStopped

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://novelengine.io/problems/"
#: Retry-After while the shared job records are unreachable: about one L2 reconnect attempt.
SHARED_JOBS_RETRY_AFTER_SECONDS = 2


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Dotted path into the request, e.g. `character_ids.3`.")
    message: str


class Problem(BaseModel):
    """An error response body (RFC 9457)."""

    model_config = ConfigDict(frozen=True)

    type: str = Field("about:blank", description="Identifies the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    errors: tuple[FieldError, ...] | None = Field(
        None, description="For validation problems: every offending field."
    )


class ProblemError(Exception):
    """Raise to answer with a problem; ``kind`` becomes the type URI's last segment."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        self.close = close  # the connection closes after the answer (`Connection: close`)


class RequestValidationError(Exception):
    """A request part (body or query) failed validation; carries pydantic's error list."""

    def __init__(
        self, errors: Sequence[ErrorDetails], source: Literal["body", "query"] = "body"
    ) -> None:
        super().__init__(f"invalid request {source}")
        self.errors = errors
        self.source = source


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    kind: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    problem = Problem(
        type=PROBLEM_TYPE_BASE + kind if kind else "about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        errors=tuple(errors) or None,
    )
    return web.Response(
        status=status,
        body=canonical_json(problem.model_dump(mode="json", exclude_none=True)),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def _validation_problem(error: RequestValidationError) -> web.Response:
    details = list(error.errors)
    if any(detail["type"] == "json_invalid" for detail in details):
        reason = details[0].get("ctx", {}).get("error", details[0]["msg"])
        return problem_response(400, f"the body is not valid JSON: {reason}", kind="malformed-json")
    fields = [
        FieldError(
            field=field_path(detail["loc"]) or f"({error.source})",
            message="unknown field" if detail["type"] == "extra_forbidden" else detail["msg"],
        )
        for detail in details
    ]
    return problem_response(
        422, f"the request {error.source} is invalid", kind="validation", errors=fields
    )


def http_problem(error: web.HTTPException) -> web.Response:
    """The problem answer to one of aiohttp's HTTP errors."""
    headers = {
        name: error.headers[name] for name in ("Allow", "Retry-After") if name in error.headers
    }
    detail = {
        404: "no such route",
        405: f"method not allowed; allowed: {headers.get('Allow', 'none')}",
        # aiohttp's own Expect handler (for a target no route serves) quotes the header
        417: "the only expectation this server meets is 100-continue",
    }.get(error.status, error.text if error.text and error.text != error.reason else None)
    return problem_response(error.status, detail, headers=headers)


def _database_locked(error: Exception) -> bool:
    """SQLite gave up waiting for another connection's lock (its busy timeout)."""
    return _sqlite_code(error) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _storage_refused(error: Exception) -> bool:
    """SQLite could not write: the data dir's filesystem is full, or no longer writable."""
    return _sqlite_code(error) in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY)


def _sqlite_code(error: Exception) -> int | None:
    """The primary result code of an SQLite error (its extended code's low byte)."""
    if isinstance(error, sqlite3.OperationalError) and error.sqlite_errorcode is not None:
        return error.sqlite_errorcode & 0xFF
    return None


def problem_for(error: Exception) -> web.Response | None:
    """The problem response for a known error, or None for an unexpected one (a bug: 500)."""
    if isinstance(error, ProblemError):
        response = problem_response(
            error.status, error.detail, kind=error.kind, errors=error.errors, headers=error.headers
        )
        if error.close:
            response.force_close()
        return response
    if isinstance(error, RequestValidationError):
        return _validation_problem(error)
    if isinstance(error, web.HTTPException):
        return http_problem(error)
    if isinstance(error, ContentNotFoundError):
        return problem_response(404, str(error), kind="not-found")
    if isinstance(error, ContentConflictError):
        return problem_response(409, str(error), kind="conflict")
    if isinstance(error, ReadOnlyContentError):
        return problem_response(409, str(error), kind="read-only-content")
    if isinstance(error, UnknownReferenceError):
        # The request is well-formed; what it points at is missing, as for an unknown URL.
        return problem_response(
            404,
            str(error),
            kind="not-found",
            errors=[FieldError(field=error.field, message=str(error))],
        )
    if isinstance(error, QueueFull):
        retry_after = max(1, math.ceil(error.retry_after))
        return problem_response(
            429,
            "the engine is at capacity; retry later",
            kind="overloaded",
            headers={"Retry-After": str(retry_after)},
        )
    if isinstance(error, PoolTimeout) or _database_locked(error):
        return problem_response(
            503, "the database is busy; retry shortly", kind="busy", headers={"Retry-After": "1"}
        )
    if _storage_refused(error):
        # Not a bug, and not cured by retrying soon: whoever runs the engine must make room.
        return problem_response(
            507,
            "the engine cannot store this: its data volume is full or read-only",
            kind="storage",
        )
    if isinstance(error, SharedJobsUnavailable):
        return problem_response(
            503,
            "this engine does not know the simulation and cannot reach the shared job records "
            "(L2) of the other replicas; retry shortly",
            kind="shared-state-unavailable",
            headers={"Retry-After": str(SHARED_JOBS_RETRY_AFTER_SECONDS)},
        )
    if isinstance(error, SchedulerStopped):
        # This replica is shutting down; another one (or this one, restarted) can take it.
        return problem_response(
            503,
            "the engine is shutting down; retry shortly",
            kind="shutting-down",
            headers={"Retry-After": "1"},
        )
    if isinstance(error, DeadlineExceeded):
        return problem_response(
            504, "the work did not finish within its deadline; retry later", kind="deadline"
        )
    return None


def internal_error() -> web.Response:
    return problem_response(500, "an unexpected error occurred; it has been logged")


def validation_errors(error: ValidationError) -> list[ErrorDetails]:
    """pydantic's errors without input echoes (an input may be large or sensitive)."""
    return error.errors(include_input=False, include_url=False)
