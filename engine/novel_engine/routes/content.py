"""CRUD routes of the content library: /v1/characters and /v1/campaigns."""

import json
import re
from typing import Annotated, Any, Generic, NoReturn, TypeVar

from aiohttp import hdrs, web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from novel_engine.content.canonical import TaggedJson, canonical_json, tagged_json
from novel_engine.content.models import (
    STRIP_BLANKS,
    Archetype,
    Atmosphere,
    Campaign,
    Character,
    Slug,
    StoredFields,
)
from novel_engine.content.store import CAMPAIGNS, CHARACTERS, AnyKind, ContentConflictError
from novel_engine.keys import CONTENT
from novel_engine.routes import Operation, Reply, json_bytes, parse_query
from novel_engine.routes.body import parse_body
from novel_engine.routes.conditional import (
    collection_preconditions,
    is_conditional,
    listed_tags,
    not_modified,
    preconditions,
)

ItemT = TypeVar("ItemT", bound=StoredFields)
PAGING_FIELDS = {"limit", "cursor"}
_DECIMAL = re.compile(r"-?[0-9]+")


def _decimal(value: Any) -> Any:
    # pydantic's conversion of text to int also reads "1_0", "+5", " 5" and "5.0".
    if isinstance(value, str) and _DECIMAL.fullmatch(value) is None:
        raise PydanticCustomError("int_parsing", "Input should be an integer in decimal digits")
    return value


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: Annotated[int, BeforeValidator(_decimal)] = Field(
        20, ge=1, le=100, description="Page size."
    )
    cursor: Slug | None = Field(
        None, description="`next_cursor` of the previous page: the page starts after this id."
    )


class CharacterQuery(PageQuery):
    # Stored factions have no blanks around them.
    faction: Annotated[str, STRIP_BLANKS] | None = Field(
        None, description="Only characters of this faction (blanks around it do not count)."
    )
    archetype: Archetype | None = Field(None, description="Only characters of this archetype.")


class CampaignQuery(PageQuery):
    atmosphere: Atmosphere | None = Field(None, description="Only campaigns of this mood.")


class Page(BaseModel, Generic[ItemT]):
    """One page of a listing, in id order."""

    items: list[ItemT]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: done.")

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        return f"{params[0].__name__}Page"  # OpenAPI component names allow no brackets


def _document_json(document: BaseModel) -> TaggedJson:
    return tagged_json(document.model_dump(mode="json"))


def content_operations(
    kind: AnyKind, query_model: type[PageQuery], page_model: type[BaseModel]
) -> list[Operation]:
    """The five operations on one kind of document."""
    collection, item_path = f"/v1/{kind.name}", f"/v1/{kind.name}/{{id}}"
    title = kind.singular.capitalize()

    async def list_documents(request: web.Request) -> web.Response:
        query = parse_query(request, query_model)
        filters = query.model_dump(mode="json", exclude=PAGING_FIELDS, exclude_none=True)
        items, next_cursor = await request.app[CONTENT].page(
            kind, limit=query.limit, cursor=query.cursor, filters=filters
        )
        page = {
            "items": [item.model_dump(mode="json") for item in items],
            "next_cursor": next_cursor,
        }
        return json_bytes(canonical_json(page))

    async def create_document(request: web.Request) -> web.Response:
        document = await parse_body(request, kind.input_model)
        if is_conditional(request):
            collection_preconditions(request)
        created = await request.app[CONTENT].create(kind, document)
        body = _document_json(created)
        headers = {"Location": f"{collection}/{created.id}", "ETag": body.etag}
        return json_bytes(body, status=201, headers=headers)

    async def get_document(request: web.Request) -> web.Response:
        body = await request.app[CONTENT].document_json(kind, request.match_info["id"])
        if is_conditional(request) and preconditions(request, body.etag):
            return not_modified(body.etag)
        return web.Response(body=body, headers=body.headers)

    async def matched_version(request: web.Request) -> int | None:
        """A 412 unless the conditional headers hold; with If-Match naming tags, the current
        version, which the write then requires. None otherwise (`If-Match: *` asks only that
        the document exists)."""
        if not is_conditional(request):
            return None
        current = await request.app[CONTENT].document_json(kind, request.match_info["id"])
        preconditions(request, current.etag)
        if "*" in (listed_tags(request, hdrs.IF_MATCH) or ["*"]):
            return None
        version: int = json.loads(current)["version"]
        return version

    async def lost_race(request: web.Request, conflict: ContentConflictError) -> NoReturn:
        """A conditional write whose version moved on after its preconditions held: judged
        again on the document now, 412 as if it had come after the other write; a conflict
        with the body's own `version` stays a 409."""
        current = await request.app[CONTENT].document_json(kind, request.match_info["id"])
        preconditions(request, current.etag)
        raise conflict

    async def replace_document(request: web.Request) -> web.Response:
        document = await parse_body(request, kind.replacement_model)
        expected_version = await matched_version(request)
        try:
            replaced = await request.app[CONTENT].replace(
                kind, request.match_info["id"], document, expected_version=expected_version
            )
        except ContentConflictError as conflict:
            if expected_version is None:
                raise
            await lost_race(request, conflict)
        body = _document_json(replaced)
        return web.Response(body=body, headers=body.headers)

    async def delete_document(request: web.Request) -> web.Response:
        expected_version = await matched_version(request)
        try:
            await request.app[CONTENT].delete(
                kind, request.match_info["id"], expected_version=expected_version
            )
        except ContentConflictError as conflict:
            if expected_version is None:
                raise
            await lost_race(request, conflict)
        return web.Response(status=204)

    item = Reply(f"The {kind.singular}.", (kind.item_model,))
    return [
        Operation(
            "GET",
            collection,
            list_documents,
            f"list_{kind.name}",
            f"List {kind.name} (paginated, filterable)",
            kind.name,
            {200: Reply(f"A page of {kind.name}.", (page_model,))},
            query=query_model,
            problems=(422, 503),
        ),
        Operation(
            "POST",
            collection,
            create_document,
            f"create_{kind.singular}",
            f"Create a {kind.singular} (id derived from its name if omitted)",
            kind.name,
            {201: item},
            body=kind.input_model,
            problems=(400, 409, 413, 422, 503, 507),
            conditional=True,
        ),
        Operation(
            "GET",
            item_path,
            get_document,
            f"get_{kind.singular}",
            f"{title} by id",
            kind.name,
            {200: item},
            problems=(404, 503),
            conditional=True,
        ),
        Operation(
            "PUT",
            item_path,
            replace_document,
            f"replace_{kind.singular}",
            f"Replace a {kind.singular} (If-Match or `version` guard against lost updates)",
            kind.name,
            {200: item},
            body=kind.replacement_model,
            problems=(400, 404, 409, 413, 422, 503, 507),
            conditional=True,
        ),
        Operation(
            "DELETE",
            item_path,
            delete_document,
            f"delete_{kind.singular}",
            f"Delete a {kind.singular}",
            kind.name,
            {204: Reply("Deleted.", content_types=())},
            problems=(404, 409, 503, 507),
            conditional=True,
        ),
    ]


def library_operations() -> list[Operation]:
    return [
        *content_operations(CHARACTERS, CharacterQuery, Page[Character]),
        *content_operations(CAMPAIGNS, CampaignQuery, Page[Campaign]),
    ]
