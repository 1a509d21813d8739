"""HTTP routes, each declared once as an ``Operation`` that both the router and OpenAPI read."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from novel_engine.content.canonical import JSON_CONTENT_TYPE
from novel_engine.middlewares import ExpectHandler
from novel_engine.problems import RequestValidationError, validation_errors

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Reply:
    """One documented response of an operation."""

    description: str
    models: tuple[type[BaseModel], ...] = ()  # several: the body is one of them
    content_types: tuple[str, ...] = (JSON_CONTENT_TYPE,)  # none: the response has no body
    # The body's schema when no model describes it (JSON the engine does not model, or text).
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
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
    # The problem statuses whose answers say when to retry (Retry-After).
    retry_after: frozenset[int] = frozenset({429, 503})
    # Responses carry an ETag; a GET, PUT or DELETE honours If-Match and If-None-Match (RFC 9110:
    # 304 Not Modified for a GET, else 412).
    conditional: bool = False
    # Without an ETag: the conditional headers it judges nonetheless, each with what it does.
    untagged_preconditions: Mapping[str, str] = field(default_factory=dict)


def parse_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The query string validated as ``model`` (strings are converted: it is text by nature).

    A parameter given twice is refused rather than one of its values silently dropped."""
    query = request.query
    repeated = [name for name in dict.fromkeys(query) if len(query.getall(name)) > 1]
    if repeated:
        raise RequestValidationError(
            [
                ErrorDetails(type="repeated", loc=(name,), msg="given more than once", input=None)
                for name in repeated
            ],
            "query",
        )
    try:
        return model.model_validate(dict(query), strict=False)
    except ValidationError as error:
        raise RequestValidationError(validation_errors(error), "query") from None


# (a multidict: aiohttp copies a response's headers into one, fastest from another)
_JSON_HEADERS = CIMultiDictProxy(CIMultiDict({hdrs.CONTENT_TYPE: JSON_CONTENT_TYPE}))


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
    template, not one per method. Templates with parameters are added first: the router tries a
    request for `/v1/characters/ada` against the templates under `/v1/characters` in the order
    they were added, and a document's GET (the hot path) then matches the first one it tries.
    """
    resources: dict[str, web.Resource] = {}
    for operation in sorted(operations, key=lambda operation: "{" not in operation.path):
        resource = resources.get(operation.path)
        if resource is None:
            resource = resources[operation.path] = app.router.add_resource(operation.path)
        resource.add_route(operation.method, operation.handler, expect_handler=expect_handler)
        if operation.method == "GET":
            resource.add_route("HEAD", operation.handler, expect_handler=expect_handler)
