"""HTTP routes, each declared once as an ``Operation`` that both the router and OpenAPI read."""

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from novel_engine.middlewares import ExpectHandler
from novel_engine.problems import (
    FieldError,
    ProblemError,
    RequestValidationError,
    validation_errors,
)

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Reply:
    """One documented response of an operation."""

    description: str
    models: tuple[type[BaseModel], ...] = ()  # several: the body is one of them
    content_type: str = JSON_CONTENT_TYPE
    # Operations (by id) whose {id} path parameter is the `id` of this body: OpenAPI links.
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    replies: Mapping[int, Reply]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    problems: Sequence[int] = field(default_factory=tuple)  # problem+json statuses it may answer
    # Responses carry an ETag; a GET, PUT or DELETE honours If-Match and If-None-Match (RFC 9110:
    # 304 Not Modified for a GET, else 412).
    conditional: bool = False


def is_json_media_type(media_type: str) -> bool:
    """application/json or a structured ``+json`` type (such as application/merge-patch+json)."""
    return media_type == JSON_CONTENT_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _check_content_type(request: web.Request) -> None:
    # A JSON-only API: refusing other types also stops cross-site HTML form posts, which can
    # only send text/plain, form-urlencoded or multipart bodies without a CORS preflight.
    charset = request.charset  # as sent: charset names are case-insensitive
    if not is_json_media_type(request.content_type) or (charset or "utf-8").lower() != "utf-8":
        raise ProblemError(
            415,
            f"the body must be {JSON_CONTENT_TYPE} (UTF-8); "
            f"got Content-Type {request.headers.get('Content-Type', '(none)')[:100]!r}",
            kind="unsupported-media-type",
        )


class _JsonObject(list[tuple[str, Any]]):
    """A JSON object as its (name, value) pairs in order, duplicates kept."""


def _duplicate_key(value: Any, path: str) -> str | None:
    """The dotted path of the first name an object repeats, searching depth-first."""
    if isinstance(value, _JsonObject):
        seen: set[str] = set()
        for name, item in value:
            item_path = f"{path}.{name}" if path else name
            if name in seen:
                return item_path
            seen.add(name)
            found = _duplicate_key(item, item_path)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _duplicate_key(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _json_members(raw: bytes) -> Any:
    """The body parsed again, strictly: objects as their members in order, duplicates kept.
    NaN and Infinity, which pydantic reads as numbers, are refused as malformed JSON."""
    try:
        return json.loads(raw, object_pairs_hook=_JsonObject, parse_constant=_not_json)
    except (ValueError, RecursionError) as error:
        raise ProblemError(
            400, f"the body is not valid JSON: {error}", kind="malformed-json"
        ) from None


async def parse_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """The body validated as ``model``; malformed JSON and invalid fields become problems.

    A body the client stopped sending part-way (connection closed or reset) is a 400: a client
    error, kept out of the 5xx count and out of the error log.
    """
    _check_content_type(request)
    try:
        raw = await request.read()  # raises 413 past the app's client_max_size
    except (ConnectionError, web.RequestPayloadError) as error:
        log.debug("unreadable request body for %s %s: %s", request.method, request.path, error)
        if isinstance(error.__cause__, ContentEncodingError):
            encoding = request.headers.get(hdrs.CONTENT_ENCODING, "")
            raise ProblemError(
                400, f"the request body is not valid {encoding} data", kind="undecodable-body"
            ) from None
        raise ProblemError(
            400, "the request body ended before its declared length", kind="incomplete-body"
        ) from None
    raw = raw or b"null"
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as error:
        errors = validation_errors(error)
        if not any(detail["type"] == "json_invalid" for detail in errors):
            _json_members(raw)  # a NaN breaks a bound: say the JSON is malformed instead
        raise RequestValidationError(errors, "body") from None
    # Read by the model, so well-formed and shallow: a second parse finds repeated names,
    # which would otherwise silently keep the last value.
    duplicate = _duplicate_key(_json_members(raw), "")
    if duplicate is not None:
        raise ProblemError(
            422,
            "the request body repeats a name in one object",
            kind="validation",
            errors=[FieldError(field=duplicate, message="duplicate key")],
        )
    return parsed


def parse_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The query string validated as ``model`` (strings are converted: it is text by nature)."""
    try:
        return model.model_validate(dict(request.query), strict=False)
    except ValidationError as error:
        raise RequestValidationError(validation_errors(error), "query") from None


_JSON_HEADERS = {"Content-Type": JSON_CONTENT_TYPE}


def json_bytes(
    body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A response with an already serialised JSON body."""
    return web.Response(
        body=body, status=status, headers={**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS
    )


def setup_routes(
    app: web.Application, operations: Sequence[Operation], expect_handler: ExpectHandler
) -> None:
    """Every operation, and HEAD beside each GET (aiohttp sends the headers without the body);
    ``expect_handler`` answers their ``Expect`` headers.

    The operations of one path share one resource, so the router tries one candidate per path
    template, not one per method.
    """
    resources: dict[str, web.Resource] = {}
    for operation in operations:
        resource = resources.get(operation.path)
        if resource is None:
            resource = resources[operation.path] = app.router.add_resource(operation.path)
        resource.add_route(operation.method, operation.handler, expect_handler=expect_handler)
        if operation.method == "GET":
            resource.add_route("HEAD", operation.handler, expect_handler=expect_handler)
