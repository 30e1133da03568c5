"""Async database engine, sessions and migrations for SQLite and PostgreSQL."""

import asyncio
import fcntl
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_only
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import POOL_PING_IDLE_S, SQLITE_WRITE_WAIT_S
from engine.settings import Settings
from engine.storage.audit import install_hooks

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
MIGRATION_LOCK_KEY = 0x5573686572  # "Usher"
READ_ONLY = "usher_read_only"
"""The execution option of a session that only reads: SQLite begins it deferred."""
HELD = "usher_write_lock"
"""Where a pooled connection notes the process's writer lock it holds until checked in."""
RETURNED_AT = "usher_returned_at"
"""Where a pooled PostgreSQL connection notes when it was last checked in."""


class WriteLockTimeout(TimeoutError):
    """A write transaction waited too long for the process's SQLite writer lock."""


class WriteLock:
    """One SQLite write transaction at a time in this process, queued rather than polled.

    SQLite lets one writer in at a time anyway; a writer that finds it taken waits in the
    busy handler, which sleeps and retries with sleeps growing to 100 ms: the tail under
    load. Here writers queue on an asyncio.Lock (one per event loop) taken before BEGIN
    IMMEDIATE and given back when the connection returns to the pool, after its COMMIT or
    ROLLBACK, so within a process the next writer starts at once. Readers never take it.
    Other processes (the API beside workers) still meet in SQLite's busy handler.
    """

    def __init__(self, wait_s: float = SQLITE_WRITE_WAIT_S) -> None:
        self.wait_s = wait_s
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._holders: weakref.WeakKeyDictionary[asyncio.Lock, asyncio.Task[Any]] = (
            weakref.WeakKeyDictionary()
        )

    def take(self, connection: Connection) -> None:
        """Wait for the lock before a write transaction begins; inside SQLAlchemy's greenlet."""
        info = connection.info
        if HELD in info:
            return
        lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        await_only(self._acquire(lock))
        info[HELD] = lock
        task = asyncio.current_task()
        if task is not None:
            self._holders[lock] = task

    async def _acquire(self, lock: asyncio.Lock) -> None:
        """Acquire the lock within the wait; take it back from a holder that ended without
        giving it back (a connection the garbage collector dropped), saying so."""
        try:
            await asyncio.wait_for(lock.acquire(), self.wait_s)
            return
        except TimeoutError:
            holder = self._holders.get(lock)
            if holder is None or not holder.done() or not lock.locked():
                raise WriteLockTimeout(
                    f"no SQLite write transaction could begin within {self.wait_s:g} s"
                ) from None
        log.error("a write transaction ended without giving the SQLite writer lock back")
        lock.release()
        await asyncio.wait_for(lock.acquire(), self.wait_s)

    def give_back(self, _dbapi_connection: Any, record: ConnectionPoolEntry, *_: Any) -> None:
        """Release the lock a connection took, once it is back in the pool or dropped."""
        lock = record.info.pop(HELD, None)
        if lock is not None and lock.locked():
            self._holders.pop(lock, None)
            lock.release()


def database_busy(error: BaseException) -> bool:
    """Tell whether an error is the database too busy to begin a write in time: this
    process's writer queue, or SQLite's lock held by another process past the busy timeout.
    What failed so is worth trying again."""
    if isinstance(error, WriteLockTimeout):
        return True
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)


def _sqlite_pragmas(busy_timeout_ms: int, dbapi_connection: Any, _record: Any) -> None:
    """Let the API and workers share one SQLite file: WAL, a busy timeout, foreign keys.

    The driver's own transaction handling is turned off so that `_begin_immediate`
    decides when a transaction starts (SQLAlchemy's documented pysqlite recipe).
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin(writes: WriteLock) -> Callable[[Connection], None]:
    """Return the begin hook: SQLite's write lock taken when a transaction begins, unless
    it only reads.

    A deferred transaction that reads and then writes cannot wait for another
    writer: SQLite answers "database is locked" at once. BEGIN IMMEDIATE waits
    instead, behind the process's other writers (`WriteLock`) and then for the busy
    timeout behind other processes'. A reader's transaction (`Database.reader`) stays
    deferred: in WAL mode it never waits for a writer nor holds one up, so pages and
    SCIM reads cannot queue behind the workers.
    """

    def begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
            return
        writes.take(connection)
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return begin


def _sqlite_engine(url: str, busy_timeout_ms: int) -> AsyncEngine:
    """Create a SQLite engine whose writers queue in the process before SQLite's lock, and
    wait at most `busy_timeout_ms` for another process's writer."""
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
    writes = WriteLock()
    event.listen(engine.sync_engine, "connect", partial(_sqlite_pragmas, busy_timeout_ms))
    event.listen(engine.sync_engine, "begin", _begin(writes))
    for released in ("checkin", "close", "detach", "invalidate"):
        event.listen(engine.sync_engine, released, writes.give_back)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled PostgreSQL connection only when it sat idle for POOL_PING_IDLE_S.

    `pool_pre_ping` pings on every checkout: a round trip per transaction. A connection
    used moments ago is alive; one idle for a while may have been cut by the server or a
    proxy, and a failed ping makes the pool open a fresh one (DisconnectionError).
    """
    dialect = engine.dialect

    def returned(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[RETURNED_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        returned_at = record.info.get(RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < POOL_PING_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"idle connection did not answer: {error}") from error

    event.listen(engine.sync_engine, "checkin", returned)
    event.listen(engine.sync_engine, "checkout", checked_out)


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> AsyncEngine:
    """Create the async engine for a database URL."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, sqlite_busy_timeout_ms)
    engine = create_async_engine(url, pool_size=10, max_overflow=10)
    _ping_when_idle(engine)
    return engine


class Database:
    """Own the engine and hand out sessions; one per process."""

    def __init__(self, url: str, *, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self.url = url
        install_hooks()
        self.engine = make_engine(url, sqlite_busy_timeout_ms=sqlite_busy_timeout_ms)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        """Build the database of a Settings, creating the data dir for SQLite."""
        settings.ensure_data_dir()
        return cls(settings.resolved_database_url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Yield a session that rolls back whatever was not committed."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """Yield a session for reads only, which never takes SQLite's write lock."""
        async with self.sessions() as session:
            await session.connection(execution_options={READ_ONLY: True})
            yield session

    async def migrate(self) -> None:
        """Bring the schema to the newest revision, one process at a time.

        `usher serve` and `usher worker` may start together on a fresh database;
        PostgreSQL serialises them with an advisory lock, SQLite with a file lock.
        """
        async with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                await connection.run_sync(_upgrade)
                return
        lock_path = self._sqlite_lock_path()
        lock = await asyncio.to_thread(_flock, lock_path) if lock_path else None
        try:
            async with self.engine.begin() as connection:
                await connection.run_sync(_upgrade)
        finally:
            if lock is not None:
                lock.close()

    def _sqlite_lock_path(self) -> Path | None:
        """Return the lock file beside a SQLite database file, None for memory."""
        database = self.engine.url.database
        if not database or database == ":memory:":
            return None
        return Path(f"{database}.migrate-lock")

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _flock(path: Path) -> IO[bytes]:
    """Open and exclusively lock a file, blocking until it is free."""
    handle = path.open("ab")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _upgrade(connection: Connection) -> None:
    """Run the migrations on an open connection."""
    command.upgrade(alembic_config(connection), "head")
