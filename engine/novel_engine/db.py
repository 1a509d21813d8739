"""A bounded pool of aiosqlite connections to the engine's SQLite database, with migrations."""

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from novel_engine.metrics import EngineMetrics

Migration = tuple[str, str]
"""(unique name, SQL script); each is applied once and recorded in schema_migrations. A name
stays in the list for good: a database recording one the engine does not list is refused, as
written by a newer engine."""


@dataclass(frozen=True)
class Squash:
    """One script that creates what the migrations named in ``replaces`` create, run instead of
    them on a database that has none of them yet (a fresh file), and recorded as all of them.

    Replaying history there would only cost start-up work: a table rebuild (create, copy, drop,
    rename) makes SQLite reparse its schema several times, and the few hundred KiB that takes
    stay with the connection's thread for the life of the process.
    """

    replaces: tuple[str, ...]
    script: str


log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^[a-z0-9_]+$")
BUSY_TIMEOUT_MS = 5000
_INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
_PRAGMAS = (
    # Freed pages go back to the filesystem on `PRAGMA incremental_vacuum` (from the next
    # checkpoint on), so deleting rows can shrink the file. Effective only before the first
    # table exists: Database.open converts older files once.
    "PRAGMA auto_vacuum=INCREMENTAL",
    "PRAGMA journal_mode=WAL",  # readers never block the writer
    "PRAGMA synchronous=NORMAL",  # safe with WAL; a power cut may lose only the last commits
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)


class PoolTimeout(Exception):  # noqa: N818 -- the name other modules map to 503
    """No database connection became free within the acquire timeout."""


class DatabaseOpenError(Exception):
    """The database could not be created, opened or migrated (a read-only data dir, a full
    disk, a file that is not an SQLite database or is damaged)."""


class Database:
    """Up to `size` connections handed out one task at a time, opened as they are needed.

    One connection opens with the pool; the others only when every open one is busy, so an
    engine that never has concurrent queries keeps one connection (an SQLite page cache and a
    thread each). Connections use Python's default transaction handling: a write opens a
    transaction that the holder commits; anything left uncommitted is rolled back when the
    connection is returned.
    """

    def __init__(
        self,
        path: Path,
        lock: int,
        first: aiosqlite.Connection,
        size: int,
        acquire_timeout: float,
        metrics: EngineMetrics | None,
    ) -> None:
        self.path = path
        self._lock = lock
        self._connections = [first]
        self._size = size
        self._opening = 0  # connections being opened; they count against size
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._idle.put_nowait(first)
        self._acquire_timeout = acquire_timeout
        self._metrics = metrics
        self._open = True

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        size: int,
        acquire_timeout: float,
        metrics: EngineMetrics | None,
        migrations: Sequence[Migration],
        squashes: Sequence[Squash] = (),
    ) -> "Database":
        """Open `path` (created if missing), apply new migrations (a squash instead of the
        migrations it replaces when none of them is applied); up to `size` connections.

        The database is this object's alone until it is closed: a lock on `<path>.lock` makes
        a second opening, in this process or another, fail. (A second engine on the same data
        dir would take the jobs queued by the first for its own crash's, and fail them.)"""
        for name, _ in migrations:
            if not _MIGRATION_NAME.match(name):
                raise ValueError(f"migration name must match {_MIGRATION_NAME.pattern}: {name!r}")
        names = {name for name, _ in migrations}
        if len(names) != len(migrations):
            raise ValueError("migration names must be unique")
        for squash in squashes:
            if not squash.replaces or not names.issuperset(squash.replaces):
                raise ValueError(f"a squash must replace known migrations: {squash.replaces!r}")
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            lock = await asyncio.to_thread(_lock, path.with_name(path.name + ".lock"))
            try:
                connection = await _connect(path)
                try:
                    await _use_incremental_vacuum(connection, path)
                    await _migrate(connection, migrations, squashes)
                except BaseException:
                    await connection.close()
                    raise
            except BaseException:
                os.close(lock)
                raise
        except (OSError, sqlite3.DatabaseError) as error:
            raise DatabaseOpenError(f"cannot open the database {path}: {error}") from error
        return cls(path, lock, connection, size, acquire_timeout, metrics)

    @property
    def is_open(self) -> bool:
        return self._open

    def acquire(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """Borrow a connection; raises PoolTimeout when none is free within the timeout."""
        return self._borrow()

    @asynccontextmanager
    async def _borrow(self) -> AsyncIterator[aiosqlite.Connection]:
        if not self._open:
            raise PoolTimeout("the database is closed")
        started = time.perf_counter()
        try:
            connection = self._idle.get_nowait()
        except asyncio.QueueEmpty:
            if len(self._connections) + self._opening < self._size:
                connection = await self._open_another()
            else:
                connection = await self._wait_for_idle(started)
        if self._metrics is not None:
            self._metrics.db_pool_wait.observe(time.perf_counter() - started)
        failed = False
        try:
            yield connection
        except BaseException:
            failed = True
            raise
        finally:
            try:
                # After an error, a statement may still be queued on the connection's thread
                # (a cancelled BEGIN waiting for the write lock): the rollback runs after it.
                if failed or connection.in_transaction:
                    await asyncio.shield(connection.rollback())
            finally:
                self._idle.put_nowait(connection)

    async def _open_another(self) -> aiosqlite.Connection:
        self._opening += 1
        try:
            connection = await _connect(self.path)
        finally:
            self._opening -= 1
        if not self._open:  # closed while connecting
            await connection.close()
            raise PoolTimeout("the database is closed")
        self._connections.append(connection)
        return connection

    async def _wait_for_idle(self, started: float) -> aiosqlite.Connection:
        try:
            async with asyncio.timeout(self._acquire_timeout):
                return await self._idle.get()
        except TimeoutError:
            if self._metrics is not None:
                self._metrics.db_pool_wait.observe(time.perf_counter() - started)
                self._metrics.db_pool_timeouts.inc()
            raise PoolTimeout(
                f"no database connection free within {self._acquire_timeout:g} s"
            ) from None

    async def bytes_on_disk(self) -> int:
        """What the database takes on its volume: the file (free pages included), its WAL and
        the WAL index."""
        return await asyncio.to_thread(_files_size, _database_files(self.path))

    async def close(self) -> None:
        """Close every connection and release the database; later acquires raise PoolTimeout.
        Closing again does nothing."""
        if not self._open:
            return
        self._open = False
        try:
            # Every one of them, even if one fails: each has a thread that keeps the process up.
            closed = await asyncio.gather(
                *(connection.close() for connection in self._connections), return_exceptions=True
            )
        finally:
            os.close(self._lock)
        for outcome in closed:
            if isinstance(outcome, BaseException):
                raise outcome


def _lock(path: Path) -> int:
    """A descriptor holding the exclusive lock on `path` (created if missing); raises
    DatabaseOpenError when something else holds it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise DatabaseOpenError(
            f"{path.parent} is in use by another engine process (it holds {path.name})"
        ) from None
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


async def _connect(path: Path) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(path)
    try:
        connection.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            await connection.execute(pragma)
    except BaseException:
        # Its thread would otherwise run on, and keep the process from ever exiting.
        await connection.close()
        raise
    return connection


async def _use_incremental_vacuum(connection: aiosqlite.Connection, path: Path) -> None:
    """Convert a file created without auto_vacuum (by an older engine): one VACUUM, once.

    VACUUM needs room for a copy of the database (in the temp dir, then in the WAL); without
    it the file stays as it is, freed pages are only reused, and the next start tries again.
    """
    rows = list(await connection.execute_fetchall("PRAGMA auto_vacuum"))
    if rows[0][0] == _INCREMENTAL:
        return
    try:
        await connection.execute("VACUUM")
    except sqlite3.OperationalError as error:
        log.warning("cannot convert %s to incremental auto-vacuum: %s", path, error)


def _database_files(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))]


def _files_size(paths: Iterable[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


async def _migrate(
    connection: aiosqlite.Connection, migrations: Sequence[Migration], squashes: Sequence[Squash]
) -> None:
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    await connection.commit()
    rows = await connection.execute_fetchall("SELECT name FROM schema_migrations")
    applied = {row[0] for row in rows}
    unknown = applied.difference(name for name, _ in migrations)
    if unknown:
        # Its tables may mean what this engine does not know: writing to them could lose data.
        raise DatabaseOpenError(
            f"the database was written by a newer engine (migrations {', '.join(sorted(unknown))}"
            "): run that version or later, or start on a new data dir"
        )
    for squash in squashes:
        if applied.isdisjoint(squash.replaces):
            await _apply(connection, squash.replaces, squash.script)
            applied.update(squash.replaces)
    for name, script in migrations:
        if name not in applied:
            await _apply(connection, (name,), script)


async def _apply(connection: aiosqlite.Connection, names: Sequence[str], script: str) -> None:
    """Run ``script`` and record ``names`` in one transaction. (Names are validated plain
    identifiers, so formatting them into SQL is safe.)"""
    records = "".join(f"INSERT INTO schema_migrations (name) VALUES ('{n}');\n" for n in names)
    try:
        await connection.executescript(f"BEGIN IMMEDIATE;\n{records}{script}\n;\nCOMMIT;")
    except sqlite3.Error:
        await connection.rollback()
        raise
