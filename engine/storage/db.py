"""Async database engine, sessions and migrations for SQLite and PostgreSQL."""

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.settings import Settings
from engine.storage.audit import install_hooks

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
MIGRATION_LOCK_KEY = 0x5573686572  # "Usher"
READ_ONLY = "usher_read_only"
"""The execution option of a session that only reads: SQLite begins it deferred."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Let the API and workers share one SQLite file: WAL, a busy timeout, foreign keys.

    The driver's own transaction handling is turned off so that `_begin_immediate`
    decides when a transaction starts (SQLAlchemy's documented pysqlite recipe).
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock when a transaction begins, unless it only reads.

    A deferred transaction that reads and then writes cannot wait for another
    writer: SQLite answers "database is locked" at once. BEGIN IMMEDIATE waits
    for the busy timeout instead, so concurrent SCIM requests and workers queue.
    A reader's transaction (`Database.reader`) stays deferred: in WAL mode it never
    waits for a writer nor holds one up, so pages cannot queue behind the workers.
    """
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> AsyncEngine:
    """Create the async engine for a database URL."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Database:
    """Own the engine and hand out sessions; one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        install_hooks()
        self.engine = make_engine(url)
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
