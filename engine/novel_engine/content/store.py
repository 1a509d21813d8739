"""SQLite persistence of the content library: one table for every kind of document.

A document's row holds its canonical JSON (without id/version) and its version. Updates are
compare-and-swap on the version, so concurrent writers never lose an update. A document
deleted and created again continues its versions.
"""

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from novel_engine.content.canonical import canonical_json
from novel_engine.content.models import (
    Campaign,
    CampaignInput,
    CampaignReplacement,
    Character,
    CharacterInput,
    CharacterReplacement,
    ContentSpec,
    InputFields,
    ReplacementFields,
    StoredFields,
    slugify,
)
from novel_engine.db import Database, Migration

MIGRATIONS: Sequence[Migration] = (
    (
        "content_0001",
        "CREATE TABLE content ("
        " kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,"
        " body TEXT NOT NULL,"
        " PRIMARY KEY (kind, id)) WITHOUT ROWID;"
        # Named content sets loaded once (the sample library), so a restart never re-adds
        # a sample the user deleted.
        "CREATE TABLE content_seeds (name TEXT PRIMARY KEY);",
    ),
    (
        "content_0002",
        # The last version of each deleted document: one created again under its id goes on
        # from there, so no version (nor the entity tag made from it) is ever handed out twice.
        "CREATE TABLE content_deleted ("
        " kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,"
        " PRIMARY KEY (kind, id)) WITHOUT ROWID;",
    ),
)

# A tombstone keeps the highest version its id had (a read-only library restarts versions).
_KEEP_HIGHEST = "ON CONFLICT (kind, id) DO UPDATE SET version = max(version, excluded.version)"
# The version of a new document (parameters: kind, id): 1, or one past its deleted namesake's.
_NEW_VERSION = "coalesce((SELECT version + 1 FROM content_deleted WHERE kind = ? AND id = ?), 1)"

ItemT = TypeVar("ItemT", bound=StoredFields, covariant=True)


@dataclass(frozen=True)
class ContentKind(Generic[ItemT]):
    """One kind of library document and how the API exposes it."""

    name: str  # plural, as in the URL: /v1/<name>
    singular: str
    input_model: type[InputFields]  # body of a create
    replacement_model: type[ReplacementFields]  # body of a replace
    item_model: type[ItemT]
    filters: tuple[str, ...]  # document fields a listing may filter on (exact match)

    def item(self, document_id: str, version: int, body: str) -> ItemT:
        # Rows were validated strictly on the way in; lax mode only turns strings back into enums.
        return self.item_model.model_validate(
            {**json.loads(body), "id": document_id, "version": version}, strict=False
        )


CHARACTERS = ContentKind(
    "characters",
    "character",
    CharacterInput,
    CharacterReplacement,
    Character,
    ("faction", "archetype"),
)
CAMPAIGNS = ContentKind(
    "campaigns", "campaign", CampaignInput, CampaignReplacement, Campaign, ("atmosphere",)
)
AnyKind = ContentKind[StoredFields]


class ContentNotFoundError(Exception):
    def __init__(self, kind: AnyKind, document_id: str) -> None:
        super().__init__(f"no {kind.singular} with id {document_id!r}")


class ContentConflictError(Exception):
    """The write clashes with what is stored: the id is taken, or the version moved on."""


class UnknownReferenceError(Exception):
    """A request names a document that does not exist; ``field`` is where it names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def document_id(document: InputFields) -> str:
    """The id a document gives, else one derived from its name or title."""
    return document.id if document.id is not None else slugify(document.label())


def _body(document: ContentSpec) -> str:
    return canonical_json(document.spec_dict()).decode()


class ContentStore:
    """CRUD over the content table; every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, kind: ContentKind[ItemT], document_id: str) -> ItemT:
        """The stored document; raises ContentNotFoundError."""
        found = await self.get_many(kind, [document_id])
        if document_id not in found:
            raise ContentNotFoundError(kind, document_id)
        return found[document_id]

    async def get_many(self, kind: ContentKind[ItemT], ids: Sequence[str]) -> dict[str, ItemT]:
        """The stored documents among ``ids`` (missing ones are simply absent)."""
        placeholders = ",".join("?" * len(ids))
        async with self._db.acquire() as connection:
            rows = await connection.execute_fetchall(
                f"SELECT id, version, body FROM content WHERE kind = ? AND id IN ({placeholders})",
                (kind.name, *ids),
            )
        return {row[0]: kind.item(row[0], row[1], row[2]) for row in rows}

    async def list(
        self,
        kind: ContentKind[ItemT],
        *,
        limit: int,
        after: str | None = None,
        filters: Mapping[str, str] | None = None,
    ) -> list[ItemT]:
        """Up to ``limit`` documents in id order, starting after id ``after``."""
        clauses = ["kind = ?"]
        parameters: list[str | int] = [kind.name]
        if after is not None:
            clauses.append("id > ?")
            parameters.append(after)
        for field, value in (filters or {}).items():
            if field not in kind.filters:
                raise ValueError(f"{kind.name} cannot be filtered by {field!r}")
            # field is one of kind.filters (fixed identifiers), so formatting it in is safe
            clauses.append(f"json_extract(body, '$.{field}') = ?")
            parameters.append(value)
        parameters.append(limit)
        async with self._db.acquire() as connection:
            rows = await connection.execute_fetchall(
                f"SELECT id, version, body FROM content WHERE {' AND '.join(clauses)}"
                " ORDER BY id LIMIT ?",
                parameters,
            )
        return [kind.item(row[0], row[1], row[2]) for row in rows]

    async def create(self, kind: ContentKind[ItemT], document: InputFields) -> ItemT:
        """Store a new document at version 1 (or one past the last version of a deleted
        document with its id); raises ContentConflictError if the id is taken."""
        new_id = document_id(document)
        body = _body(document)
        try:
            async with self._db.acquire() as connection:
                rows = list(
                    await connection.execute_fetchall(
                        "INSERT INTO content (kind, id, version, body)"
                        f" VALUES (?, ?, {_NEW_VERSION}, ?) RETURNING version",
                        (kind.name, new_id, kind.name, new_id, body),
                    )
                )
                await connection.commit()
        except sqlite3.IntegrityError:
            raise ContentConflictError(
                f"a {kind.singular} with id {new_id!r} already exists; "
                f"update it with PUT /v1/{kind.name}/{new_id}"
            ) from None
        return kind.item(new_id, rows[0][0], body)

    async def replace(
        self,
        kind: ContentKind[ItemT],
        existing_id: str,
        document: ReplacementFields,
        *,
        expected_version: int | None = None,
    ) -> ItemT:
        """Replace a document's content, bumping its version if the content changed.

        ``document.version`` and ``expected_version``, when given, must be the current version
        (optimistic locking).
        """
        body = _body(document)
        async with self._db.acquire() as connection:
            # The write lock before the read: a concurrent write waits, so the version checked
            # is the version replaced (the pool rolls back what an error leaves open).
            await connection.execute("BEGIN IMMEDIATE")
            rows = list(
                await connection.execute_fetchall(
                    "SELECT version, body FROM content WHERE kind = ? AND id = ?",
                    (kind.name, existing_id),
                )
            )
            if not rows:
                raise ContentNotFoundError(kind, existing_id)
            current, stored_body = rows[0][0], rows[0][1]
            for wanted in (document.version, expected_version):
                if wanted is not None and wanted != current:
                    raise ContentConflictError(
                        f"{kind.singular} {existing_id!r} is at version {current}, "
                        f"not {wanted}; fetch it again and reapply the change"
                    )
            if stored_body != body:
                await connection.execute(
                    "UPDATE content SET version = version + 1, body = ? WHERE kind = ? AND id = ?",
                    (body, kind.name, existing_id),
                )
                current += 1
            await connection.commit()
        return kind.item(existing_id, current, body)

    async def delete(
        self, kind: AnyKind, existing_id: str, *, expected_version: int | None = None
    ) -> None:
        """Remove a document; raises ContentNotFoundError if there is none, and
        ContentConflictError if ``expected_version`` is given and no longer current."""
        async with self._db.acquire() as connection:
            deleted = list(
                await connection.execute_fetchall(
                    "DELETE FROM content WHERE kind = ? AND id = ? AND (? IS NULL OR version = ?)"
                    " RETURNING version",
                    (kind.name, existing_id, expected_version, expected_version),
                )
            )
            if deleted:
                await connection.execute(
                    "INSERT INTO content_deleted (kind, id, version) VALUES (?, ?, ?)"
                    f" {_KEEP_HIGHEST}",
                    (kind.name, existing_id, deleted[0][0]),
                )
            await connection.commit()
        if not deleted:
            if expected_version is not None and await self.get_many(kind, [existing_id]):
                raise ContentConflictError(
                    f"{kind.singular} {existing_id!r} changed meanwhile; fetch it again and retry"
                )
            raise ContentNotFoundError(kind, existing_id)

    async def mirror(self, documents: Iterable[tuple[AnyKind, InputFields]]) -> int:
        """Make the library exactly these documents, each at version 1 (of two with the same
        kind and id, the later one), in one transaction; returns how many documents were
        added, changed or removed."""
        wanted = {
            (kind.name, document_id(document)): _body(document) for kind, document in documents
        }
        async with self._db.acquire() as connection:
            # (no other writer: the library is read-only, and the database this process's)
            rows = await connection.execute_fetchall("SELECT kind, id, version, body FROM content")
            before = {(row[0], row[1]): (row[2], row[3]) for row in rows}
            changed = sum(before.get(key) != (1, body) for key, body in wanted.items())
            changed += len(before.keys() - wanted.keys())
            if changed:  # (a start with the same files writes nothing)
                # As if each were deleted: should the library turn writable again, none of
                # its documents repeats a version it had before.
                await connection.execute(
                    "INSERT INTO content_deleted (kind, id, version)"
                    f" SELECT kind, id, version FROM content WHERE true {_KEEP_HIGHEST}"
                )
                await connection.execute("DELETE FROM content")
                await connection.executemany(
                    "INSERT INTO content (kind, id, version, body) VALUES (?, ?, 1, ?)",
                    [(kind, new_id, body) for (kind, new_id), body in wanted.items()],
                )
            await connection.commit()
        return changed

    async def seeded(self, seed: str) -> bool:
        """Whether the named content set was loaded (see ``load``)."""
        async with self._db.acquire() as connection:
            rows = await connection.execute_fetchall(
                "SELECT 1 FROM content_seeds WHERE name = ?", (seed,)
            )
        return bool(list(rows))

    async def load(
        self,
        documents: Iterable[tuple[AnyKind, InputFields]],
        *,
        seed: str | None = None,
    ) -> int:
        """Write file content in one transaction; returns how many documents changed.

        With ``seed`` (a name), the documents are loaded only if that seed never was, and only
        where no document with the same id exists (user edits win). Without it, files are
        authoritative: new documents are added and changed ones updated (version + 1).
        """
        changed = 0
        async with self._db.acquire() as connection:
            if seed is not None:
                cursor = await connection.execute(
                    "INSERT OR IGNORE INTO content_seeds (name) VALUES (?)", (seed,)
                )
                if cursor.rowcount == 0:
                    await connection.rollback()
                    return 0
            for kind, document in documents:
                new_id, body = document_id(document), _body(document)
                on_conflict = (
                    "DO NOTHING"  # a seed never overwrites what the user has
                    if seed is not None
                    else "DO UPDATE SET version = version + 1, body = excluded.body"
                    " WHERE body != excluded.body"
                )
                cursor = await connection.execute(
                    "INSERT INTO content (kind, id, version, body)"
                    f" VALUES (?, ?, {_NEW_VERSION}, ?) ON CONFLICT (kind, id) {on_conflict}",
                    (kind.name, new_id, kind.name, new_id, body),
                )
                changed += max(0, cursor.rowcount)
            await connection.commit()
        return changed
