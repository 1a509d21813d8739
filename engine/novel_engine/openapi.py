"""Builds the OpenAPI 3.1 document from the route operations and their pydantic models."""

import asyncio
import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, JsonSchemaValue, models_json_schema

from novel_engine import __version__
from novel_engine.content.canonical import canonical_json
from novel_engine.problems import PROBLEM_CONTENT_TYPE, Problem
from novel_engine.routes import Operation

REF_TEMPLATE = "#/components/schemas/{model}"
Refs = dict[tuple[Any, JsonSchemaMode], JsonSchemaValue]  # (model, mode) -> {"$ref": ...}
_PATH_PARAMETER = re.compile(r"{(\w+)}")
DESCRIPTION = (
    "A deterministic multi-agent narrative simulation service. Errors are RFC 9457 problem "
    "details (application/problem+json)."
)


def _models(operations: Sequence[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Problem, "serialization"): None}
    for operation in operations:
        for model in (operation.body, operation.query):
            if model is not None:
                wanted[model, "validation"] = None
        for reply in operation.replies.values():
            for model in reply.models:
                wanted[model, "serialization"] = None
    return list(wanted)


def _schema(
    refs: Refs,
    models: Sequence[type[BaseModel]],
    mode: Literal["validation", "serialization"],
) -> dict[str, Any]:
    if len(models) == 1:
        return dict(refs[models[0], mode])
    return {"oneOf": [refs[model, mode] for model in models]}


ETAG_HEADER = {
    "ETag": {
        "description": "Entity tag of the representation: a hash of its bytes.",
        "schema": {"type": "string"},
    }
}
RETRY_AFTER_HEADER = {
    "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
}


LOCATION_HEADER = {
    "Location": {
        "description": "Where the created document, or the accepted job's status, is read.",
        "schema": {"type": "string"},
    }
}


def head_operation_id(operation_id: str) -> str:
    """The id of the HEAD documented beside the GET ``operation_id``."""
    return f"{operation_id}_head"


#: The methods that honour conditional headers, on operations marked conditional.
_CONDITIONAL_METHODS = ("GET", "POST", "PUT", "DELETE")
_PRECONDITIONS = {
    "POST": {
        "If-Match": "`*` only: the collection a POST targets has no ETag, so a tag is a 412.",
        "If-None-Match": "`*` is a 412 (the collection exists); no tag matches it.",
    },
    "GET": {
        "If-Match": "ETags (or `*`): 412 unless one is current.",
        "If-None-Match": "ETags the client holds (or `*`): 304 if one is current.",
    },
    "PUT": {
        "If-Match": "The ETag the change applies to (or `*`): 412 if it is not current.",
        "If-None-Match": "ETags (or `*`): 412 if one is current (`*`: if the document exists).",
    },
}


def _preconditions(operation: Operation) -> list[dict[str, Any]]:
    """The conditional request headers an operation honours, as parameters."""
    if operation.untagged_preconditions:
        headers = operation.untagged_preconditions
    elif operation.conditional and operation.method in _CONDITIONAL_METHODS:
        headers = _PRECONDITIONS.get(operation.method, _PRECONDITIONS["PUT"])  # DELETE: PUT's
    else:
        return []
    return [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": description,
            "schema": {"type": "string"},
        }
        for name, description in headers.items()
    ]


def _parameters(
    operation: Operation, definitions: dict[str, Any], refs: Refs
) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMETER.findall(operation.path)
    ]
    parameters += _preconditions(operation)
    if operation.query is not None:
        query_name = refs[operation.query, "validation"]["$ref"].rsplit("/", 1)[-1]
        query_schema = definitions[query_name]
        required = set(query_schema.get("required", ()))
        for name, schema in query_schema["properties"].items():
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "description": schema.get("description", ""),
                    "schema": schema,
                }
            )
    return parameters


def _problem_statuses(operation: Operation) -> list[int]:
    statuses = [*operation.problems, 417]  # an Expect header but 100-continue
    if operation.body is not None:
        statuses.append(415)  # parse_body refuses a body not JSON, or in a coding it cannot undo
        statuses.append(408)  # or one that does not arrive within body_timeout
        statuses.append(501)  # a transfer coding but chunked
    if _preconditions(operation):
        statuses.append(412)
    return sorted({*statuses, 500})


def _responses(operation: Operation, refs: Refs, *, head: bool = False) -> dict[str, Any]:
    """The documented responses; ``head``: those of the HEAD beside a GET (no bodies)."""
    responses: dict[str, Any] = {}
    for status, reply in operation.replies.items():
        response: dict[str, Any] = {"description": reply.description}
        schema = _schema(refs, reply.models, "serialization") if reply.models else reply.schema
        if reply.content_types and not head:
            response["content"] = {
                content_type: {"schema": dict(schema)} for content_type in reply.content_types
            }
        headers = {
            # (a response without a body has no representation to tag)
            **(ETAG_HEADER if operation.conditional and reply.content_types else {}),
            **(LOCATION_HEADER if status in (201, 202) else {}),
        }
        if headers:
            response["headers"] = headers
        if reply.links and not head:
            response["links"] = {
                linked: {"operationId": linked, "parameters": {"id": "$response.body#/id"}}
                for target in reply.links
                for linked in (target, head_operation_id(target))
            }
        responses[str(status)] = response
    if operation.conditional and operation.method == "GET":
        responses["304"] = {"description": "Not Modified (If-None-Match)", "headers": ETAG_HEADER}
    problem_schema = refs[Problem, "serialization"]
    for status in _problem_statuses(operation):
        response = {"description": HTTPStatus(status).phrase}
        if not head:
            response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": problem_schema}}
        if status in operation.retry_after:
            response["headers"] = RETRY_AFTER_HEADER
        responses[str(status)] = response
    return responses


def build_openapi(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``operations``."""
    refs, components = models_json_schema(_models(operations), ref_template=REF_TEMPLATE)
    definitions: dict[str, Any] = components.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        entry: dict[str, Any] = {
            "operationId": operation.operation_id,
            "summary": operation.summary,
            "tags": [operation.tag],
            "parameters": _parameters(operation, definitions, refs),
            "responses": _responses(operation, refs),
        }
        if operation.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema(refs, (operation.body,), "validation")}
                },
            }
        path = paths.setdefault(operation.path, {})
        path[operation.method.lower()] = entry
        if operation.method == "GET":
            path["head"] = {
                **entry,
                "operationId": head_operation_id(operation.operation_id),
                "summary": f"{operation.summary} (headers only)",
                "responses": _responses(operation, refs, head=True),
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "NovelEngine API", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": definitions},
    }


class OpenApiDocument:
    """The serialised document of ``operations``, built on its first request and then kept.

    Building it takes every model's JSON schema (about 0.8 MiB and 70 ms), which a process that
    is never asked for it does not need; the build runs in a thread, off the event loop.
    """

    def __init__(self, operations: Sequence[Operation]) -> None:
        self._operations = tuple(operations)
        self._body: bytes | None = None
        self._building = asyncio.Lock()

    async def body(self) -> bytes:
        if self._body is None:
            async with self._building:
                if self._body is None:
                    self._body = await asyncio.to_thread(self._build)
        return self._body

    def _build(self) -> bytes:
        return canonical_json(build_openapi(self._operations))
