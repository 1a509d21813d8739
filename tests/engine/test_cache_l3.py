"""The SQLite cache tier stores bytes across restarts, stays bounded and never raises."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from novel_engine.cache import MIGRATIONS, SqliteTier
from novel_engine.db import Database


async def open_db(path: Path, size: int = 2) -> Database:
    return await Database.open(
        path, size=size, acquire_timeout=0.2, metrics=None, migrations=MIGRATIONS
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_db(tmp_path / "engine.db")
    yield database
    await database.close()


async def test_set_get_delete(db: Database) -> None:
    tier = SqliteTier(db)
    assert await tier.get("k") is None
    await tier.set("k", b"\x00value")
    await tier.set("k", b"newer")
    assert await tier.get("k") == b"newer"
    await tier.delete("k")
    assert await tier.get("k") is None
    assert (tier.stats.hits, tier.stats.misses, tier.stats.errors) == (1, 2, 0)


async def test_entries_survive_a_restart(tmp_path: Path) -> None:
    first = await open_db(tmp_path / "engine.db")
    await SqliteTier(first).set("k", b"kept")
    await first.close()
    second = await open_db(tmp_path / "engine.db")
    try:
        assert await SqliteTier(second).get("k") == b"kept"
    finally:
        await second.close()


async def test_oldest_rows_are_pruned_beyond_the_limit(db: Database) -> None:
    clock = iter(range(1000))
    tier = SqliteTier(db, max_entries=16, clock=lambda: float(next(clock)))
    for number in range(40):
        await tier.set(f"k{number}", b"v")
    async with db.acquire() as connection:
        rows = list(await connection.execute_fetchall("SELECT count(*) FROM cache_entries"))
    assert rows[0][0] == 16
    assert tier.stats.evictions == 24
    assert await tier.get("k39") == b"v"
    assert await tier.get("k23") is None


async def test_database_trouble_is_counted_not_raised(tmp_path: Path) -> None:
    database = await open_db(tmp_path / "engine.db", size=1)
    tier = SqliteTier(database)
    async with database.acquire():  # the only connection is busy: acquire times out
        assert await tier.get("k") is None
        await tier.set("k", b"v")
        await tier.delete("k")
    await database.close()
    assert await tier.get("k") is None
    assert tier.stats.errors == 4
    assert tier.stats.misses == 0
