"""Request bodies: JSON only, in a content coding the engine decodes, parsed strictly.

The engine decodes request bodies itself (RFC 9110 8.4); its server turns aiohttp's decoding
off (``novel_engine.server``). aiohttp's takes a gzip body that ends early for a whole one,
passes a coding it does not know through as if there were none, and refuses one it cannot
decode as malformed HTTP. Here a body may use gzip or deflate (``identity`` changes nothing);
any other coding, or more than one, is a 415 that lists the ones accepted, and a body its coding
cannot decode, that ends before its coded data does or goes on after it, a 400.
"""

import asyncio
import json
import logging
import zlib
from typing import Any

from aiohttp import hdrs, web
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from novel_engine.content.canonical import JSON_CONTENT_TYPE
from novel_engine.keys import SETTINGS
from novel_engine.middlewares import header_elements
from novel_engine.problems import (
    ProblemError,
    RequestValidationError,
    validation_errors,
)
from novel_engine.routes import ModelT

log = logging.getLogger(__name__)

_ACCEPTED_CODINGS = "gzip, deflate"
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around deflate data
_CODING_WBITS = {"gzip": _GZIP_WBITS, "x-gzip": _GZIP_WBITS, "deflate": zlib.MAX_WBITS}


def _coding(request: web.Request) -> str | None:
    """The coding of the request's body, None for none; a 415 if the engine cannot undo it."""
    codings = [
        coding for coding in header_elements(request, hdrs.CONTENT_ENCODING) if coding != "identity"
    ]
    # One coding at most: each one more would be another pass over up to max_body_bytes.
    if len(codings) > 1 or (codings and codings[0] not in _CODING_WBITS):
        header = ",".join(request.headers.getall(hdrs.CONTENT_ENCODING, ()))
        raise ProblemError(
            415,
            f"the body's Content-Encoding {header[:60]!r} is not one this server decodes; "
            f"it takes one of {_ACCEPTED_CODINGS}",
            kind="unsupported-content-coding",
            headers={hdrs.ACCEPT_ENCODING: _ACCEPTED_CODINGS},
        )
    return codings[0] if codings else None


def _decode(raw: bytes, coding: str, max_bytes: int) -> bytes:
    """``raw`` with ``coding`` undone; a 413 once it decodes to more than ``max_bytes``, a 400
    if it is not that coding's data, ends before that data does or goes on after it."""
    wbits = _CODING_WBITS[coding]
    if coding == "deflate" and raw[:1] and raw[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # deflate data without zlib's header: some clients send that
    parts: list[bytes] = []
    size = 0
    rest = raw
    while True:  # a gzip body may hold several members, one after another (RFC 1952)
        decompressor = zlib.decompressobj(wbits)
        try:
            part = decompressor.decompress(rest, max_bytes + 1 - size)
        except zlib.error:
            raise _undecodable(f"the request body is not valid {coding} data") from None
        parts.append(part)
        size += len(part)
        if size > max_bytes:  # decoding stops there: a small bomb goes no further
            raise ProblemError(
                413, f"the body, decoded, is larger than the limit of {max_bytes} bytes"
            )
        if not decompressor.eof:
            raise _undecodable(f"the request body ends before its {coding} data does")
        rest = decompressor.unused_data
        if not rest:
            return b"".join(parts)
        if wbits != _GZIP_WBITS:
            raise _undecodable(f"the request body goes on after its {coding} data ends")


def _undecodable(detail: str) -> ProblemError:
    return ProblemError(400, detail, kind="undecodable-body")


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


def _duplicate_key(value: Any, loc: tuple[int | str, ...] = ()) -> tuple[int | str, ...] | None:
    """The location of the first name an object repeats, searching depth-first."""
    if isinstance(value, _JsonObject):
        seen: set[str] = set()
        for name, item in value:
            if name in seen:
                return (*loc, name)
            seen.add(name)
            found = _duplicate_key(item, (*loc, name))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _duplicate_key(item, (*loc, index))
            if found is not None:
                return found
    return None


def _duplicate_error(loc: tuple[int | str, ...]) -> ErrorDetails:
    return ErrorDetails(
        type="duplicate_key", loc=loc, msg="duplicate key: the object repeats this name", input=None
    )


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
    error, kept out of the 5xx count and out of the error log. One still coming after
    body_timeout is a 408, and its connection closes: the rest of it is not waited for.
    """
    _check_content_type(request)
    coding = _coding(request)
    settings = request.app[SETTINGS]
    try:
        async with asyncio.timeout(settings.body_timeout):
            raw = await request.read()  # raises 413 past the app's client_max_size
    except TimeoutError:
        raise ProblemError(
            408,
            f"the request body did not arrive whole within {settings.body_timeout:g} s",
            kind="body-timeout",
            close=True,
        ) from None
    except (ConnectionError, web.RequestPayloadError) as error:
        log.debug("unreadable request body for %s %s: %s", request.method, request.path, error)
        raise ProblemError(
            400, "the request body ended before its declared length", kind="incomplete-body"
        ) from None
    if coding is not None:
        raw = _decode(raw, coding, settings.max_body_bytes)
    raw = raw or b"null"
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as error:
        errors = validation_errors(error)
        if not any(detail["type"] == "json_invalid" for detail in errors):
            # (a NaN breaks a bound: the second parse says the JSON is malformed instead)
            duplicate = _duplicate_key(_json_members(raw))
            if duplicate is not None:
                errors.insert(0, _duplicate_error(duplicate))
        raise RequestValidationError(errors, "body") from None
    # Read by the model, so well-formed and shallow: a second parse finds repeated names,
    # which would otherwise silently keep the last value.
    duplicate = _duplicate_key(_json_members(raw))
    if duplicate is not None:
        raise RequestValidationError([_duplicate_error(duplicate)], "body")
    return parsed
