"""The SQLite cache tier stores bytes across restarts, stays bounded and never raises."""

import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from novel_engine.cache import MIGRATIONS, SqliteTier
from novel_engine.db import Database

from .conftest import files_size


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


@pytest.mark.parametrize("value_bytes", [2_000, 30_000, 300_000])
async def test_the_files_on_disk_stay_within_max_bytes(tmp_path: Path, value_bytes: int) -> None:
    database = await open_db(tmp_path / "engine.db")
    clock = itertools.count()
    max_bytes = 1024 * 1024
    tier = SqliteTier(database, max_bytes=max_bytes, clock=lambda: float(next(clock)))
    try:
        sizes = []
        for number in range(2 * max_bytes // value_bytes + 20):  # twice the budget
            await tier.set(f"k{number}", random.randbytes(value_bytes))
            sizes.append(files_size(tmp_path))
        assert max(sizes) <= max_bytes
        assert max(sizes) >= max_bytes // 2  # filled, not kept small by evicting too much
        assert tier.stats.evictions > 0
        assert await tier.get(f"k{number}") is not None  # the newest entry stays
        assert await tier.get("k0") is None
    finally:
        await database.close()


async def test_only_cache_entries_are_evicted(tmp_path: Path) -> None:
    database = await open_db(tmp_path / "engine.db")
    async with database.acquire() as connection:  # other data, as jobs and content are
        await connection.execute("CREATE TABLE other (data BLOB)")
        await connection.execute("INSERT INTO other VALUES (?)", (random.randbytes(300_000),))
        await connection.commit()
    tier = SqliteTier(database, max_bytes=200_000)
    try:
        await tier.set("k", random.randbytes(1000))
        assert await tier.get("k") is None
        assert tier.stats.evictions == 1
        async with database.acquire() as connection:
            rows = list(await connection.execute_fetchall("SELECT length(data) FROM other"))
        assert rows[0][0] == 300_000
    finally:
        await database.close()
