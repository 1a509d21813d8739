"""The on-disk cache tier: a SQLite table in the engine's database, pruned oldest-first."""

import sqlite3
import time
from collections.abc import Callable, Sequence

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


class SqliteTier:
    """get/set/delete on the cache_entries table; database trouble is counted, never raised.

    The table keeps about max_entries rows: every max_entries/16 writes, the oldest rows
    beyond the limit are deleted (counted as evictions).
    """

    def __init__(
        self, db: Database, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.stats = CacheStats("l3")
        self.max_entries = max_entries
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
        except (PoolTimeout, sqlite3.Error):
            self.stats.errors += 1

    async def delete(self, key: str) -> None:
        try:
            async with self._db.acquire() as connection:
                await connection.execute("DELETE FROM cache_entries WHERE key = ?", (key,))
                await connection.commit()
        except (PoolTimeout, sqlite3.Error):
            self.stats.errors += 1
