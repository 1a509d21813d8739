"""The SQLite pool sets its pragmas, migrates once, and bounds the wait for a connection."""

import asyncio
import contextlib
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path

import aiosqlite
import pytest
from prometheus_client import CollectorRegistry

from novel_engine.db import Database, DatabaseOpenError, Migration, PoolTimeout, Squash
from novel_engine.metrics import EngineMetrics

NOTES: list[Migration] = [
    ("notes_0001", "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"),
    (
        "notes_0002",
        "CREATE TABLE tags (note_id INTEGER NOT NULL REFERENCES notes(id), tag TEXT NOT NULL);",
    ),
]


async def open_db(path: Path, migrations: list[Migration], **kwargs: object) -> Database:
    options: dict[str, object] = {"size": 2, "acquire_timeout": 1.0, "metrics": None}
    options.update(kwargs)
    return await Database.open(path, migrations=migrations, **options)  # type: ignore[arg-type]


async def pragma(connection: aiosqlite.Connection, name: str) -> object:
    rows = list(await connection.execute_fetchall(f"PRAGMA {name}"))
    return rows[0][0]


async def test_every_connection_has_the_pragmas(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "sub" / "engine.db", NOTES, size=3)
    try:
        async with AsyncExitStack() as stack:
            held = [await stack.enter_async_context(db.acquire()) for _ in range(3)]
            assert len({id(connection) for connection in held}) == 3
            for connection in held:
                assert await pragma(connection, "journal_mode") == "wal"
                assert await pragma(connection, "synchronous") == 1  # NORMAL
                assert await pragma(connection, "busy_timeout") == 5000
                assert await pragma(connection, "foreign_keys") == 1
    finally:
        await db.close()


NOTES_SQUASH = Squash(
    ("notes_0001", "notes_0002"),
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
    "CREATE TABLE tags (note_id INTEGER NOT NULL REFERENCES notes(id), tag TEXT NOT NULL);",
)


async def older_database(path: Path) -> None:
    """A file an older engine made: only the first migration applied, and a note kept."""
    db = await open_db(path, NOTES[:1])
    async with db.acquire() as connection:
        await connection.execute("INSERT INTO notes (text) VALUES ('kept')")
        await connection.commit()
    await db.close()


async def migration_names(db: Database) -> list[str]:
    async with db.acquire() as connection:
        rows = await connection.execute_fetchall("SELECT name FROM schema_migrations")
        return sorted(row["name"] for row in rows)


async def notes(db: Database) -> list[str]:
    async with db.acquire() as connection:
        rows = await connection.execute_fetchall("SELECT text FROM notes")
        return [row["text"] for row in rows]


async def test_migrations_apply_once_and_new_ones_later(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    await older_database(path)
    for _ in range(2):  # reopening re-runs nothing that was applied
        db = await open_db(path, NOTES)
        assert await notes(db) == ["kept"]
        assert await migration_names(db) == ["notes_0001", "notes_0002"]
        await db.close()


async def test_a_database_from_a_newer_engine_is_refused_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    await (await open_db(path, NOTES)).close()  # written by the engine with both migrations
    with pytest.raises(DatabaseOpenError, match="newer engine \\(migrations notes_0002\\)"):
        await open_db(path, NOTES[:1])
    db = await open_db(path, NOTES)  # the engine that wrote it still opens it
    try:
        assert await migration_names(db) == ["notes_0001", "notes_0002"]
    finally:
        await db.close()


async def test_a_squash_creates_a_fresh_database_in_one_step(tmp_path: Path) -> None:
    # The replaced migrations would fail here: the squash must run instead of them.
    broken = [(name, "SELECT no_such_column FROM notes;") for name, _ in NOTES]
    db = await open_db(tmp_path / "engine.db", broken, squashes=[NOTES_SQUASH])
    try:
        assert await migration_names(db) == ["notes_0001", "notes_0002"]
        async with db.acquire() as connection:
            await connection.execute("INSERT INTO notes (text) VALUES ('new')")
            await connection.execute("INSERT INTO tags VALUES (1, 'fresh')")
            await connection.commit()
    finally:
        await db.close()


async def test_a_database_with_part_of_a_squash_applied_replays_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    await older_database(path)
    # A squash that would clash with the existing table is not run.
    db = await open_db(path, NOTES, squashes=[NOTES_SQUASH])
    try:
        assert await migration_names(db) == ["notes_0001", "notes_0002"]
        assert await notes(db) == ["kept"]
        async with db.acquire() as connection:
            await connection.execute("INSERT INTO tags VALUES (1, 'upgraded')")
            await connection.commit()
    finally:
        await db.close()


async def test_a_squash_must_replace_known_migrations(tmp_path: Path) -> None:
    stray = Squash(("notes_0001", "notes_0003"), "")
    with pytest.raises(ValueError, match="squash"):
        await open_db(tmp_path / "engine.db", NOTES, squashes=[stray])


async def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "engine.db", NOTES)
    try:
        async with db.acquire() as connection:
            with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
                await connection.execute("INSERT INTO tags (note_id, tag) VALUES (42, 'x')")
    finally:
        await db.close()


async def test_failed_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    broken: list[Migration] = [("broken_0001", "CREATE TABLE half (id INTEGER); NOT SQL;")]
    with pytest.raises(DatabaseOpenError, match="syntax error"):
        await open_db(path, broken)
    db = await open_db(path, [])
    try:
        async with db.acquire() as connection:
            tables = await connection.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
            assert [row["name"] for row in tables] == ["schema_migrations"]
    finally:
        await db.close()


@pytest.mark.parametrize("name", ["Bad-Name", "x'; DROP TABLE notes; --"])
async def test_migration_names_are_plain_identifiers(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="migration name"):
        await open_db(tmp_path / "engine.db", [(name, "SELECT 1;")])


async def test_uncommitted_work_is_rolled_back_on_release(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "engine.db", NOTES, size=1)
    try:
        async with db.acquire() as connection:
            await connection.execute("INSERT INTO notes (text) VALUES ('forgotten')")
        async with db.acquire() as connection:
            assert await connection.execute_fetchall("SELECT * FROM notes") == []
    finally:
        await db.close()


async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_no_transaction(
    tmp_path: Path,
) -> None:
    db = await open_db(tmp_path / "engine.db", NOTES, size=2)
    try:
        async with db.acquire(), db.acquire():
            pass  # both connections open (opening one waits on a held write lock too)
        async with db.acquire() as holder:
            await holder.execute("BEGIN IMMEDIATE")  # the write lock, for now
            waiting = asyncio.create_task(write_note(db, "late"))
            await asyncio.sleep(0.3)  # its BEGIN waits on the lock (the busy timeout)
            waiting.cancel()
            await holder.commit()  # the BEGIN queued on the other connection gets the lock
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0.3)  # SQLite's busy handler retries the BEGIN within that
        async with db.acquire() as first, db.acquire() as second:
            assert not first.in_transaction
            assert not second.in_transaction
            await second.execute("INSERT INTO notes (text) VALUES ('next')")  # not locked out
            await second.commit()
    finally:
        await db.close()


async def write_note(db: Database, text: str) -> None:
    async with db.acquire() as connection:
        await connection.execute("BEGIN IMMEDIATE")
        await connection.execute("INSERT INTO notes (text) VALUES (?)", (text,))
        await connection.commit()


async def test_pool_timeout_when_every_connection_is_held(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    db = await open_db(
        tmp_path / "engine.db", NOTES, size=2, acquire_timeout=0.05, metrics=EngineMetrics(registry)
    )
    try:
        async with db.acquire(), db.acquire():
            with pytest.raises(PoolTimeout):
                async with db.acquire():
                    pass
        async with db.acquire():  # connections came back
            pass
        assert registry.get_sample_value("novel_engine_db_pool_timeouts_total") == 1
        assert registry.get_sample_value("novel_engine_db_pool_wait_seconds_count") == 4
    finally:
        await db.close()


async def test_connections_open_only_when_every_open_one_is_held(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "engine.db", NOTES, size=3, acquire_timeout=0.05)
    try:
        one_at_a_time = set()
        for _ in range(3):
            async with db.acquire() as connection:
                one_at_a_time.add(id(connection))
        async with AsyncExitStack() as stack:
            held = {id(await stack.enter_async_context(db.acquire())) for _ in range(3)}
            with pytest.raises(PoolTimeout):
                await stack.enter_async_context(db.acquire())
        async with AsyncExitStack() as stack:
            held_again = {id(await stack.enter_async_context(db.acquire())) for _ in range(3)}
        assert len(one_at_a_time) == 1
        assert len(held) == 3
        assert one_at_a_time < held
        assert held_again == held
    finally:
        await db.close()


async def test_waiter_gets_the_connection_released_before_its_timeout(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "engine.db", NOTES, size=1, acquire_timeout=5.0)
    try:
        release = asyncio.Event()

        async def hold() -> None:
            async with db.acquire():
                await release.wait()

        async def wait_and_query() -> list[object]:
            async with db.acquire() as connection:
                return list(await connection.execute_fetchall("SELECT 1"))

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(wait_and_query())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        release.set()
        await holder
        assert len(await waiter) == 1
    finally:
        await db.close()


async def test_closed_database_refuses_acquire(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "engine.db", NOTES)
    states = [db.is_open]
    await db.close()
    states.append(db.is_open)
    assert states == [True, False]
    with pytest.raises(PoolTimeout, match="closed"):
        async with db.acquire():
            pass


async def test_a_database_opens_once_until_closed_and_closing_again_does_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "engine.db"
    db = await open_db(path, NOTES)
    with pytest.raises(DatabaseOpenError, match="in use by another engine process"):
        await open_db(path, NOTES)
    await db.close()
    await db.close()  # (its lock's descriptor is not closed twice: it may be another file's)
    again = await open_db(path, NOTES)
    await again.close()


async def test_a_file_without_auto_vacuum_is_converted_and_can_shrink(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    with contextlib.closing(sqlite3.connect(path)) as older:  # as an older engine made it
        older.execute("CREATE TABLE blobs (data BLOB)")
        older.executemany("INSERT INTO blobs VALUES (?)", [(bytes(100_000),)] * 20)
        older.commit()
    db = await open_db(path, [])
    try:
        async with db.acquire() as connection:
            assert await pragma(connection, "auto_vacuum") == 2  # INCREMENTAL
            full = await db.bytes_on_disk()
            await connection.execute("DELETE FROM blobs")
            await connection.commit()
            await connection.executescript("PRAGMA incremental_vacuum")
            await connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert await db.bytes_on_disk() < full // 10
    finally:
        await db.close()
