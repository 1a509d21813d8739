"""The content library as the API uses it: store + in-process read cache + read-only switch.

Documents are served as canonical JSON bytes cached in the process's L1 tier only: every
replica holds the full library in its own SQLite file, so a shared tier would add nothing
and could serve another replica's (older) content during a rolling update.
"""

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from novel_engine.cache import L1Cache
from novel_engine.content.canonical import TaggedJson, tagged_json
from novel_engine.content.loader import directory_content, sample_content
from novel_engine.content.models import (
    Campaign,
    Character,
    ContentFile,
    InputFields,
    ReplacementFields,
)
from novel_engine.content.store import (
    CAMPAIGNS,
    CHARACTERS,
    AnyKind,
    ContentKind,
    ContentStore,
    ItemT,
    UnknownReferenceError,
)

SAMPLES_SEED = "samples-v1"


class ReadOnlyContentError(Exception):
    """Content writes are disabled on this engine."""


def _cache_key(kind: AnyKind, document_id: str) -> str:
    return f"content:{kind.name}:{document_id}"


def _documents(files: Sequence[ContentFile]) -> list[tuple[AnyKind, InputFields]]:
    documents: list[tuple[AnyKind, InputFields]] = []
    for content in files:
        documents += [(CHARACTERS, character) for character in content.characters]
        documents += [(CAMPAIGNS, campaign) for campaign in content.campaigns]
    return documents


class ContentLibrary:
    def __init__(self, store: ContentStore, l1: L1Cache, *, read_only: bool) -> None:
        self.store = store
        self.read_only = read_only
        self._l1 = l1
        # Bumped by every write: a read that started before a write must not cache its result.
        self._generation = 0

    async def load_files(self, content_dirs: Sequence[Path]) -> int:
        """Load the sample library and the content directories' files.

        Writable, the samples are seeded on the first start only (so user edits stick), and
        the files are authoritative: a document they define is updated to match them at every
        start. Read-only, nothing else changes the library: it is rebuilt from both at every
        start, every document at version 1, so that every replica serves the same documents
        at the same versions whatever its database held before (a volume kept across
        restarts). Returns how many documents were added, changed or (read-only) removed.
        """
        seeding = self.read_only or not await self.store.seeded(SAMPLES_SEED)
        samples = await asyncio.to_thread(sample_content) if seeding else []
        files = await asyncio.to_thread(directory_content, content_dirs)
        if self.read_only:
            return await self.store.mirror(_documents([*samples, *files]))
        changed = await self.store.load(_documents(samples), seed=SAMPLES_SEED) if seeding else 0
        return changed + await self.store.load(_documents(files))

    async def document_json(self, kind: AnyKind, document_id: str) -> TaggedJson:
        """The stored document as canonical JSON with its entity tag; raises
        ContentNotFoundError."""
        key = _cache_key(kind, document_id)
        cached = self._l1.get(key)
        if isinstance(cached, TaggedJson):  # only this class caches under content keys
            return cached
        generation = self._generation
        document = await self.store.get(kind, document_id)
        body = tagged_json(document.model_dump(mode="json"))
        if generation == self._generation:
            self._l1.set(key, body)
        return body

    async def page(
        self,
        kind: ContentKind[ItemT],
        *,
        limit: int,
        cursor: str | None,
        filters: Mapping[str, str],
    ) -> tuple[list[ItemT], str | None]:
        """One page of documents in id order, and the cursor of the next page: the id of this
        page's last document, or None at the end. Any id is a valid cursor: the page starts
        after it."""
        items = await self.store.list(kind, limit=limit + 1, after=cursor, filters=filters)
        if len(items) > limit:
            return items[:limit], items[limit - 1].id
        return items, None

    async def create(self, kind: ContentKind[ItemT], document: InputFields) -> ItemT:
        self._check_writable()
        created = await self.store.create(kind, document)
        self._written(kind, created.id)
        return created

    async def replace(
        self,
        kind: ContentKind[ItemT],
        document_id: str,
        document: ReplacementFields,
        *,
        expected_version: int | None = None,
    ) -> ItemT:
        self._check_writable()
        replaced = await self.store.replace(
            kind, document_id, document, expected_version=expected_version
        )
        self._written(kind, document_id)
        return replaced

    async def delete(
        self, kind: AnyKind, document_id: str, *, expected_version: int | None = None
    ) -> None:
        self._check_writable()
        await self.store.delete(kind, document_id, expected_version=expected_version)
        self._written(kind, document_id)

    async def cast(
        self, character_ids: Sequence[str], campaign_id: str | None
    ) -> tuple[tuple[Character, ...], Campaign | None]:
        """The documents a simulation names; unknown ids are errors on the request's fields."""
        found = await self.store.get_many(CHARACTERS, character_ids)
        for index, character_id in enumerate(character_ids):
            if character_id not in found:
                raise UnknownReferenceError(
                    f"character_ids.{index}", f"no character with id {character_id!r}"
                )
        campaign = None
        if campaign_id is not None:
            campaigns = await self.store.get_many(CAMPAIGNS, [campaign_id])
            if campaign_id not in campaigns:
                raise UnknownReferenceError("campaign_id", f"no campaign with id {campaign_id!r}")
            campaign = campaigns[campaign_id]
        return tuple(found[character_id] for character_id in character_ids), campaign

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyContentError(
                "content is read-only on this engine (started with --read-only-content); "
                "change the content files it loads instead"
            )

    def _written(self, kind: AnyKind, document_id: str) -> None:
        self._generation += 1
        self._l1.delete(_cache_key(kind, document_id))
