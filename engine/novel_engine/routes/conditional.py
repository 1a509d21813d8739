"""Entity tags and the conditional request headers that use them (RFC 9110, section 13).

A representation's tag is a hash of its bytes: content documents are canonical JSON that
include their version, so the tag changes with every update, and a document deleted and created
again under the same id never reuses a stale tag.
"""

import re

from aiohttp import hdrs, web

from novel_engine.problems import ProblemError

_READS = frozenset({"GET", "HEAD"})
# An element of a comma-separated list: a quoted tag (which may hold commas, even `*`) or
# anything else up to the next comma.
_LIST_ELEMENT = re.compile(r'(?:W/)?"[^"]*"|[^,\s][^,]*')


def listed_tags(request: web.Request, name: str) -> list[str] | None:
    """The entity tags (or `*`) the conditional header ``name`` lists, None without it. Its
    lines count as one comma-separated list (RFC 9110, section 5.3)."""
    lines = request.headers.getall(name, None)
    if lines is None:
        return None
    return [element.strip() for line in lines for element in _LIST_ELEMENT.findall(line)]


def is_conditional(request: web.Request) -> bool:
    """Whether the request has an If-Match or If-None-Match header: most have neither, and
    need no tags read nor current representation fetched."""
    headers = request.headers
    return hdrs.IF_MATCH in headers or hdrs.IF_NONE_MATCH in headers


def _precondition_failed(tag: str, detail: str) -> ProblemError:
    return ProblemError(412, detail, kind="precondition-failed", headers={"ETag": tag})


def preconditions(request: web.Request, tag: str) -> bool:
    """Evaluate If-Match, then If-None-Match, against the current tag ``tag`` (RFC 9110,
    section 13.2.2). True when a GET or HEAD is to answer 304 Not Modified; a 412 problem when
    If-Match names no current tag (strong comparison), or If-None-Match names it (weak
    comparison, or ``*``) on a write."""
    tags = listed_tags(request, hdrs.IF_MATCH)
    if tags is not None and "*" not in tags and tag not in tags:
        raise _precondition_failed(
            tag,
            "the resource has changed since the If-Match entity tag was issued; "
            "fetch it again and reapply the change",
        )
    tags = listed_tags(request, hdrs.IF_NONE_MATCH)
    if tags is None:
        return False
    if "*" not in tags and tag not in (listed.removeprefix("W/") for listed in tags):
        return False
    if request.method in _READS:
        return True
    raise _precondition_failed(tag, "the resource exists with an entity tag If-None-Match names")


def collection_preconditions(request: web.Request) -> None:
    """Evaluate a POST's If-Match and If-None-Match against the collection it targets, which
    exists and has no entity tag (RFC 9110, sections 13.1.1-2): If-Match holds only as ``*``,
    If-None-Match fails only as ``*``; a 412 problem otherwise."""
    tags = listed_tags(request, hdrs.IF_MATCH)
    if tags is not None and "*" not in tags:
        raise ProblemError(
            412,
            "If-Match names an entity tag, and the collection a POST targets has none; "
            "If-Match applies to a document (PUT, DELETE)",
            kind="precondition-failed",
        )
    if "*" in (listed_tags(request, hdrs.IF_NONE_MATCH) or ()):
        raise ProblemError(
            412, "If-None-Match: * does not hold: the collection exists", kind="precondition-failed"
        )


def unrepresented_preconditions(request: web.Request) -> None:
    """Evaluate If-Match against a target that has no current representation, which it never
    matches, `*` included (RFC 9110, section 13.1.1): a 412 problem when it is present.
    If-None-Match always holds there."""
    if hdrs.IF_MATCH in request.headers:
        raise ProblemError(
            412,
            "If-Match never holds here: the target has no representation to match (a POST "
            "creates a new one)",
            kind="precondition-failed",
        )


def not_modified(tag: str) -> web.Response:
    return web.Response(status=304, headers={"ETag": tag})
