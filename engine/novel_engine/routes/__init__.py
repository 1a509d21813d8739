"""HTTP routes, each declared once as an ``Operation`` that both the router and OpenAPI read."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from novel_engine.problems import RequestValidationError, validation_errors

ModelT = TypeVar("ModelT", bound=BaseModel)
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Reply:
    """One documented response of an operation."""

    description: str
    models: tuple[type[BaseModel], ...] = ()  # several: the body is one of them
    content_type: str = JSON_CONTENT_TYPE


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


async def parse_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """The body validated as ``model``; malformed JSON and invalid fields become problems."""
    raw = await request.read()  # raises 413 past the app's client_max_size
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as error:
        raise RequestValidationError(validation_errors(error), "body") from None


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


def setup_routes(app: web.Application, operations: Sequence[Operation]) -> None:
    for operation in operations:
        app.router.add_route(
            operation.method, operation.path, operation.handler, name=operation.operation_id
        )
