"""Entity tags and the conditional request headers that use them (RFC 9110, section 13).

A representation's tag is a hash of its bytes: content documents are canonical JSON that
include their version, so the tag changes with every update, and a document deleted and created
again under the same id never reuses a stale tag.
"""

from aiohttp import web

from novel_engine.problems import ProblemError


def _listed_tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def none_match(request: web.Request, tag: str) -> bool:
    """Whether If-None-Match names ``tag`` (weak comparison: a ``W/`` prefix is ignored)."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    tags = _listed_tags(header)
    return "*" in tags or tag in (listed.removeprefix("W/") for listed in tags)


def not_modified(tag: str) -> web.Response:
    return web.Response(status=304, headers={"ETag": tag})


def check_if_match(request: web.Request, tag: str) -> bool:
    """False without If-Match; True when it names ``tag`` (strong comparison) or ``*``.

    Raises a 412 problem when If-Match names other tags only.
    """
    header = request.headers.get("If-Match")
    if header is None:
        return False
    tags = _listed_tags(header)
    if "*" in tags or tag in tags:
        return True
    raise ProblemError(
        412,
        "the document has changed since the If-Match entity tag was issued; "
        "fetch it again and reapply the change",
        kind="precondition-failed",
        headers={"ETag": tag},
    )
