"""The on-disk cache tier: a SQLite table in the engine's database, pruned oldest-first."""

import sqlite3
import time
from collections.abc import Callable, Sequence

import aiosqlite

from novel_engine.db import Database, Migration, PoolTimeout
from novel_engine.metrics import CacheStats

MIGRATIONS: Sequence[Migration] = (
    (
        "cache_l3_0001",
        "CREATE TABLE cache_entries ("
        " key TEXT PRIMARY KEY, value BLOB NOT NULL, stored_at REAL NOT NULL);"
        "CREATE INDEX cache_entries_stored_at ON cache_entries (stored_at);",
    ),
)


# Eviction goes below the budget by this share, so that it does not run at every check.
_EVICTION_TARGET = 0.9
# Rounds of evict-and-measure per check: freed space shows on disk only after a checkpoint,
# and deleted bytes are an estimate of freed pages.
_EVICTION_ROUNDS = 4


class SqliteTier:
    """get/set/delete on the cache_entries table; database trouble is counted, never raised.

    Two bounds, both enforced by deleting the oldest entries (counted as evictions):
    - max_entries rows: checked every max_entries/16 writes;
    - max_bytes on disk: the database file, free pages included, plus its WAL; jobs and
      content count too, but only cache entries are evicted. Checked after every write (the
      files' sizes read in a thread): when they exceed max_bytes, the WAL is checkpointed
      and truncated, and if that is not enough the oldest entries are deleted down to nine
      tenths of max_bytes and their pages returned to the filesystem (incremental vacuum).
    """

    def __init__(
        self,
        db: Database,
        *,
        max_entries: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stats = CacheStats("l3")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._db = db
        self._clock = clock
        self._prune_every = max(1, max_entries // 16)
        self._writes_since_prune = 0

    async def get(self, key: str) -> bytes | None:
        try:
            async with self._db.acquire() as connection:
                rows = list(
                    await connection.execute_fetchall(
                        "SELECT value FROM cache_entries WHERE key = ?", (key,)
                    )
                )
        except (PoolTimeout, sqlite3.Error):
            self.stats.errors += 1
            return None
        if not rows:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return bytes(rows[0][0])

    async def set(self, key: str, value: bytes) -> None:
        self._writes_since_prune += 1
        prune = self._writes_since_prune >= self._prune_every
        try:
            async with self._db.acquire() as connection:
                await connection.execute(
                    "INSERT OR REPLACE INTO cache_entries (key, value, stored_at) VALUES (?, ?, ?)",
                    (key, value, self._clock()),
                )
                if prune:
                    self._writes_since_prune = 0
                    cursor = await connection.execute(
                        "DELETE FROM cache_entries WHERE key IN (SELECT key FROM cache_entries"
                        " ORDER BY stored_at DESC LIMIT -1 OFFSET ?)",
                        (self.max_entries,),
                    )
                    self.stats.evictions += max(0, cursor.rowcount)
                await connection.commit()
                if await self._db.bytes_on_disk() > self.max_bytes:
                    await self._shrink_to_max_bytes(connection)
        except (PoolTimeout, sqlite3.Error):
            self.stats.errors += 1

    async def _shrink_to_max_bytes(self, connection: aiosqlite.Connection) -> None:
        for _ in range(_EVICTION_ROUNDS):
            # TRUNCATE: the WAL's pages move into the file (and pages a vacuum released leave
            # it) and the WAL shrinks to nothing, unless a reader holds it (then next write).
            await connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            excess = await self._db.bytes_on_disk() - self.max_bytes
            if excess <= 0:
                return
            cursor = await connection.execute(
                "DELETE FROM cache_entries WHERE key IN (SELECT key FROM ("
                " SELECT key, length(key) + length(value) AS size,"
                " sum(length(key) + length(value)) OVER (ORDER BY stored_at, key) AS upto"
                " FROM cache_entries) WHERE upto - size < ?)",
                (excess + self.max_bytes * (1 - _EVICTION_TARGET),),
            )
            await connection.commit()
            if cursor.rowcount <= 0:
                return  # nothing left to evict: the rest is not the cache's
            self.stats.evictions += cursor.rowcount
            # A script, because each step of the statement frees one page.
            await connection.executescript("PRAGMA incremental_vacuum")
            await connection.commit()
        await connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def delete(self, key: str) -> None:
        try:
            async with self._db.acquire() as connection:
                await connection.execute("DELETE FROM cache_entries WHERE key = ?", (key,))
                await connection.commit()
        except (PoolTimeout, sqlite3.Error):
            self.stats.errors += 1
