"""Canonical JSON: one byte representation per value, identical in every process.

Sorted keys, fixed separators and UTF-8 make hashes and cached bodies comparable across replicas.
"""

import hashlib
import json
from functools import cached_property
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

JSON_CONTENT_TYPE = "application/json"


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` (JSON-compatible data) to its canonical bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


class TaggedJson(bytes):
    """Canonical JSON bytes that carry their strong entity tag, computed once with the bytes,
    and their response headers, built once with the first response: a cached document answers
    every GET and conditional request without hashing or building headers again."""

    etag: str

    @cached_property
    def headers(self) -> CIMultiDictProxy[str]:
        """Content-Type and ETag. (aiohttp copies a response's headers into a multidict of its
        own, which is cheaper from a multidict than from a dict. The simulation workers import
        this module too: it does not import aiohttp.)"""
        return CIMultiDictProxy(CIMultiDict({"Content-Type": JSON_CONTENT_TYPE, "ETag": self.etag}))


def tagged_json(value: Any) -> TaggedJson:
    """``value``'s canonical JSON, tagged."""
    body = TaggedJson(canonical_json(value))
    body.etag = entity_tag(body)
    return body


def entity_tag(body: bytes) -> str:
    """The strong entity tag of a representation, quoted as the ETag header carries it: a hash
    of its bytes, so the same bytes get the same tag in every replica."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def content_digest(value: Any) -> str:
    """The sha256 hex digest of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
