"""The SQLite content store: CRUD, versions, optimistic locking, pagination and file loading."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from novel_engine.cache import L1Cache
from novel_engine.content.library import SAMPLES_SEED, ContentLibrary, ReadOnlyContentError
from novel_engine.content.loader import sample_content
from novel_engine.content.models import CampaignInput, CharacterInput, CharacterReplacement
from novel_engine.content.store import (
    CAMPAIGNS,
    CHARACTERS,
    MIGRATIONS,
    ContentConflictError,
    ContentNotFoundError,
    ContentStore,
    UnknownReferenceError,
)
from novel_engine.db import Database


def character(name: str, **fields: object) -> CharacterInput:
    return CharacterInput.model_validate(
        {"name": name, "faction": "Guild", "archetype": "engineer", **fields}, strict=False
    )


def campaign(title: str) -> CampaignInput:
    return CampaignInput.model_validate({"id": "ada", "title": title, "setting": "Somewhere."})


def replacement(name: str, **fields: object) -> CharacterReplacement:
    return CharacterReplacement.model_validate(
        {"name": name, "faction": "Guild", "archetype": "engineer", **fields}, strict=False
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ContentStore]:
    db = await Database.open(
        tmp_path / "content.sqlite3", size=2, acquire_timeout=5, metrics=None, migrations=MIGRATIONS
    )
    yield ContentStore(db)
    await db.close()


def library(store: ContentStore, *, read_only: bool = False) -> ContentLibrary:
    return ContentLibrary(store, L1Cache(100, 1 << 20, 60), read_only=read_only)


async def test_create_derives_the_id_and_starts_at_version_one(store: ContentStore) -> None:
    created = await store.create(CHARACTERS, character("Ada Quill"))
    assert (created.id, created.version) == ("ada-quill", 1)
    assert await store.get(CHARACTERS, "ada-quill") == created


async def test_create_refuses_a_taken_id(store: ContentStore) -> None:
    await store.create(CHARACTERS, character("Ada"))
    with pytest.raises(ContentConflictError, match="already exists"):
        await store.create(CHARACTERS, character("Someone Else", id="ada"))


async def test_replace_bumps_the_version_only_when_content_changes(store: ContentStore) -> None:
    await store.create(CHARACTERS, character("Ada"))
    same = await store.replace(CHARACTERS, "ada", replacement("Ada"))
    changed = await store.replace(CHARACTERS, "ada", replacement("Ada", faction="Crown"))
    assert (same.version, changed.version) == (1, 2)
    assert (await store.get(CHARACTERS, "ada")).faction == "Crown"


async def test_replace_with_a_stale_version_is_a_conflict(store: ContentStore) -> None:
    await store.create(CHARACTERS, character("Ada"))
    await store.replace(CHARACTERS, "ada", replacement("Ada", faction="Crown", version=1))
    with pytest.raises(ContentConflictError, match="version 2, not 1"):
        await store.replace(CHARACTERS, "ada", replacement("Ada", faction="Mob", version=1))
    with pytest.raises(ContentConflictError, match="version 2, not 1"):
        await store.replace(CHARACTERS, "ada", replacement("Ada"), expected_version=1)


async def test_replace_refuses_unknown_documents(store: ContentStore) -> None:
    with pytest.raises(ContentNotFoundError):
        await store.replace(CHARACTERS, "bob", replacement("Bob"))


async def test_delete(store: ContentStore) -> None:
    await store.create(CHARACTERS, character("Ada"))
    await store.replace(CHARACTERS, "ada", replacement("Ada", faction="Crown"))
    with pytest.raises(ContentConflictError, match="changed meanwhile"):
        await store.delete(CHARACTERS, "ada", expected_version=1)
    await store.delete(CHARACTERS, "ada", expected_version=2)
    with pytest.raises(ContentNotFoundError):
        await store.get(CHARACTERS, "ada")
    with pytest.raises(ContentNotFoundError):
        await store.delete(CHARACTERS, "ada")


async def test_a_document_created_again_after_a_delete_goes_on_from_its_version(
    store: ContentStore,
) -> None:
    await store.create(CHARACTERS, character("Ada"))
    await store.replace(CHARACTERS, "ada", replacement("Ada", faction="Crown"))
    await store.delete(CHARACTERS, "ada")
    again = await store.create(CHARACTERS, character("Ada"))
    assert again.version == 3  # version 1 was the first Ada's: its holders must not match
    with pytest.raises(ContentConflictError, match="version 3, not 1"):
        await store.replace(CHARACTERS, "ada", replacement("Ada", version=1))
    await store.delete(CHARACTERS, "ada")
    assert await store.load([(CHARACTERS, character("Ada"))]) == 1  # files, too
    assert (await store.get(CHARACTERS, "ada")).version == 4
    # A read-only start puts its documents at version 1; their past versions stay taken.
    await store.mirror([(CHARACTERS, character("Ada"))])
    await store.delete(CHARACTERS, "ada")
    assert (await store.create(CHARACTERS, character("Ada"))).version == 5
    assert (await store.create(CAMPAIGNS, campaign("Ada"))).version == 1  # another kind's


async def test_kinds_are_separate_namespaces(store: ContentStore) -> None:
    await store.create(CHARACTERS, character("Ada"))
    with pytest.raises(ContentNotFoundError):
        await store.get(CAMPAIGNS, "ada")


async def test_pages_walk_every_document_once_in_id_order(store: ContentStore) -> None:
    for name in ["Eve", "Bob", "Dan", "Ada", "Cy"]:
        await store.create(CHARACTERS, character(name))
    content = library(store)
    seen: list[str] = []
    cursor = None
    while True:
        items, cursor = await content.page(CHARACTERS, limit=2, cursor=cursor, filters={})
        seen += [item.id for item in items]
        if cursor is None:
            break
    assert seen == ["ada", "bob", "cy", "dan", "eve"]


async def test_filters_match_exactly(store: ContentStore) -> None:
    await store.create(CHARACTERS, character("Ada", faction="Crown"))
    await store.create(CHARACTERS, character("Bob", archetype="warrior"))
    crown = await store.list(CHARACTERS, limit=10, filters={"faction": "Crown"})
    warriors = await store.list(CHARACTERS, limit=10, filters={"archetype": "warrior"})
    assert [c.id for c in crown] == ["ada"]
    assert [c.id for c in warriors] == ["bob"]
    with pytest.raises(ValueError, match="cannot be filtered"):
        await store.list(CHARACTERS, limit=10, filters={"name": "Ada"})


async def test_any_id_is_a_cursor_the_page_starts_after(store: ContentStore) -> None:
    for name in ["Ada", "Cy", "Dan"]:
        await store.create(CHARACTERS, character(name))
    items, cursor = await library(store).page(CHARACTERS, limit=1, cursor="bob", filters={})
    assert ([item.id for item in items], cursor) == (["cy"], "cy")


async def test_samples_are_seeded_once_and_never_overwrite_user_edits(
    store: ContentStore, tmp_path: Path
) -> None:
    content = library(store)
    assert not await store.seeded(SAMPLES_SEED)
    assert await content.load_files([]) == 15
    assert await store.seeded(SAMPLES_SEED)
    await store.delete(CHARACTERS, "bram-holt")
    await store.replace(CHARACTERS, "ilse-varn", replacement("Ilse"))
    assert await content.load_files([]) == 0
    with pytest.raises(ContentNotFoundError):
        await store.get(CHARACTERS, "bram-holt")
    assert (await store.get(CHARACTERS, "ilse-varn")).name == "Ilse"
    documents = [(CHARACTERS, c) for file in sample_content() for c in file.characters]
    assert await store.load(documents, seed=SAMPLES_SEED) == 0


async def test_content_directories_are_authoritative(store: ContentStore, tmp_path: Path) -> None:
    (tmp_path / "cast.yaml").write_text(
        "characters: [{id: ilse-varn, name: Ilse Reborn, faction: Crown, archetype: leader}]"
    )
    content = library(store)
    await content.load_files([tmp_path])
    first = await store.get(CHARACTERS, "ilse-varn")
    await content.load_files([tmp_path])
    again = await store.get(CHARACTERS, "ilse-varn")
    assert first.name == "Ilse Reborn"
    assert first.version == again.version == 2  # sample at 1, file at 2, unchanged file: still 2


async def test_read_only_library_refuses_every_write(store: ContentStore) -> None:
    content = library(store, read_only=True)
    with pytest.raises(ReadOnlyContentError, match="read-only"):
        await content.create(CHARACTERS, character("Ada"))
    with pytest.raises(ReadOnlyContentError):
        await content.replace(CHARACTERS, "ada", replacement("Ada"))
    with pytest.raises(ReadOnlyContentError):
        await content.delete(CHARACTERS, "ada")


async def test_a_read_only_library_is_its_files_whatever_the_database_held(
    store: ContentStore, tmp_path: Path
) -> None:
    # A replica restarted on its volume with new files, and a new replica given only those.
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "cast.yaml").write_text(
        "characters: [{id: ilse-varn, name: Ilse Reborn, faction: Crown, archetype: leader},"
        " {name: Yan Two, faction: Guild, archetype: scout}]"
    )
    (second / "cast.yaml").write_text(
        "characters: [{id: ilse-varn, name: Ilse Again, faction: Crown, archetype: leader}]"
    )
    await library(store).load_files([first])  # written while it was not yet read-only
    await store.replace(CHARACTERS, "bram-holt", replacement("Bram"))
    await library(store, read_only=True).load_files([first])
    restarted = library(store, read_only=True)
    assert await restarted.load_files([second]) == 2  # yan-two removed, ilse-varn changed
    db = await Database.open(
        tmp_path / "new.sqlite3", size=2, acquire_timeout=5, metrics=None, migrations=MIGRATIONS
    )
    try:
        new = library(ContentStore(db), read_only=True)
        await new.load_files([second])
        for kind in (CHARACTERS, CAMPAIGNS):
            pages = [
                await replica.page(kind, limit=100, cursor=None, filters={})
                for replica in (restarted, new)
            ]
            assert pages[0] == pages[1]
        ilse = [
            await replica.document_json(CHARACTERS, "ilse-varn") for replica in (restarted, new)
        ]
        assert ilse[0] == ilse[1]
        assert ilse[0].etag == ilse[1].etag
        assert b'"name":"Ilse Again"' in ilse[0]
        assert b'"version":1' in ilse[0]
        with pytest.raises(ContentNotFoundError):
            await restarted.store.get(CHARACTERS, "yan-two")
    finally:
        await db.close()


async def test_a_read_only_start_with_the_same_files_writes_nothing(tmp_path: Path) -> None:
    # So that it starts on a volume with no room left, as it did before it rebuilt anything.
    (tmp_path / "cast.yaml").write_text(
        "characters: [{name: Yan Two, faction: Guild, archetype: scout}]"
    )
    db = await Database.open(
        tmp_path / "one.sqlite3", size=1, acquire_timeout=5, metrics=None, migrations=MIGRATIONS
    )
    try:
        store = ContentStore(db)
        assert await library(store, read_only=True).load_files([tmp_path]) == 16  # 15 samples
        async with db.acquire() as connection:  # the pool's one connection
            await connection.execute("PRAGMA query_only = ON")  # any write now fails
        assert await library(store, read_only=True).load_files([tmp_path]) == 0
    finally:
        await db.close()


async def test_cached_documents_are_invalidated_by_writes(store: ContentStore) -> None:
    content = library(store)
    await content.create(CHARACTERS, character("Ada"))
    before = await content.document_json(CHARACTERS, "ada")
    await content.replace(CHARACTERS, "ada", replacement("Ada", faction="Crown"))
    after = await content.document_json(CHARACTERS, "ada")
    assert b'"faction":"Guild"' in before
    assert b'"faction":"Crown"' in after


async def test_cast_reports_unknown_ids_by_field(store: ContentStore) -> None:
    content = library(store)
    await content.load_files([])
    with pytest.raises(UnknownReferenceError) as caught:
        await content.cast(["ilse-varn", "nobody"], None)
    assert caught.value.field == "character_ids.1"
    with pytest.raises(UnknownReferenceError) as caught:
        await content.cast(["ilse-varn", "bram-holt"], "atlantis")
    assert caught.value.field == "campaign_id"
