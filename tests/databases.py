"""Both databases Usher supports, for this run: a SQLite file and PostgreSQL.

In-process tests get a migrated PostgreSQL schema of their own; Usher's processes (serve,
worker) get a fresh PostgreSQL database, created for the run and dropped after it.
PostgreSQL is `USHER_TEST_POSTGRES_URL` (default: the local server); a run fails loudly,
never skips silently, when it does not answer. `none` leaves PostgreSQL out on purpose.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from engine.storage.db import Database

T = TypeVar("T")
POSTGRES_ENV = "USHER_TEST_POSTGRES_URL"
POSTGRES_DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DATABASES = ("sqlite", "postgresql")
"""Every test that runs Usher's processes runs once on each."""
SERVED = [pytest.param(kind, marks=pytest.mark.xdist_group(kind)) for kind in DATABASES]
"""The params of a session fixture that starts Usher's processes on a database: under
`pytest -n 2 --dist loadgroup` (make test) each database's tests share one worker, so each
worker starts the processes of one database only."""


def postgres_server() -> URL:
    """Return the PostgreSQL server of this run; `none` leaves PostgreSQL out, loudly."""
    url = os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT_URL)
    if url == "none":
        pytest.skip(f"{POSTGRES_ENV}=none: PostgreSQL left out on purpose")
    return make_url(url)


async def _on_server(server: URL, statement: str) -> None:
    """Run one statement outside a transaction (CREATE and DROP DATABASE need that)."""
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await admin.dispose()


async def create_database(prefix: str) -> tuple[URL, str]:
    """Create an empty PostgreSQL database; fail the test, never skip, when none answers."""
    server = postgres_server()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        await _on_server(server, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {server.render_as_string()} is unreachable ({exc!r}). Start it, "
            f"point {POSTGRES_ENV} at another server, or set {POSTGRES_ENV}=none.",
            pytrace=False,
        )
    return server, name


async def drop_database(server: URL, name: str) -> None:
    """Drop a database this run created, closing the connections still open on it."""
    await _on_server(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(data_dir: Path) -> str:
    """Return the URL of the SQLite file Usher's processes share in a data dir."""
    return f"sqlite+aiosqlite:///{data_dir / 'usher.db'}"


def database_url(server: URL, name: str) -> str:
    """Return the URL of one database on the PostgreSQL server, as processes are given it."""
    return server.set(database=name).render_as_string(hide_password=False)


@asynccontextmanager
async def private_database(
    kind: str, data_dir: Path, prefix: str = "usher_test"
) -> AsyncIterator[str]:
    """Yield a database URL Usher's processes can share: a SQLite file in the data dir, or a
    fresh PostgreSQL database, dropped at the end."""
    if kind == "sqlite":
        yield sqlite_url(data_dir)
        return
    server, name = await create_database(prefix)
    try:
        yield database_url(server, name)
    finally:
        await drop_database(server, name)


def run_apart(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end in a thread of its own, beside any loop on this thread
    (Playwright's sync API keeps one running for the page tests)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine())).result()


@contextmanager
def served_database(kind: str, data_dir: Path) -> Iterator[str]:
    """Do as private_database, for a synchronous fixture that starts processes."""
    if kind == "sqlite":
        yield sqlite_url(data_dir)
        return
    server, name = run_apart(lambda: create_database("usher_test"))
    try:
        yield database_url(server, name)
    finally:
        run_apart(lambda: drop_database(server, name))


@dataclass(frozen=True)
class Backend:
    """A migrated database this test run owns: a SQLite file, or its own PostgreSQL schema."""

    url: str
    schema: str | None = None

    def database(self) -> Database:
        """Open a Database whose connections see this run's tables."""
        database = Database(self.url)
        if self.schema is not None:
            listener = partial(use_schema, self.schema)
            event.listen(database.engine.sync_engine, "do_connect", listener)
        return database


def use_schema(
    schema: str, _dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]
) -> None:
    """Open PostgreSQL connections on this run's schema: a startup setting no rollback undoes."""
    cparams["server_settings"] = {"search_path": schema}


async def migrate(backend: Backend) -> None:
    """Create this run's tables."""
    database = backend.database()
    try:
        await database.migrate()
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
async def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """Return a migrated SQLite file for this run."""
    backend = Backend(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('databases') / 'usher.db'}")
    await migrate(backend)
    return backend


@pytest.fixture(scope="session")
async def postgresql_backend() -> AsyncIterator[Backend]:
    """Return a fresh migrated PostgreSQL schema; fail, never skip, when the server is down."""
    url = os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT_URL)
    if url == "none":
        pytest.skip(f"{POSTGRES_ENV}=none")
    backend = Backend(url, schema=f"usher_test_{uuid.uuid4().hex[:12]}")
    admin = Database(url)
    try:
        async with admin.engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{backend.schema}"'))
    except Exception as exc:
        await admin.dispose()
        pytest.fail(
            f"PostgreSQL at {url} is unreachable ({exc!r}). Start it, point {POSTGRES_ENV} "
            f"at another server, or set {POSTGRES_ENV}=none to leave PostgreSQL out.",
            pytrace=False,
        )
    try:
        await migrate(backend)
        yield backend
    finally:
        async with admin.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{backend.schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture(scope="session")
async def sqlite_database(sqlite_backend: Backend) -> AsyncIterator[Database]:
    """Return the SQLite database the async tests share."""
    database = sqlite_backend.database()
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def postgresql_database(postgresql_backend: Backend) -> AsyncIterator[Database]:
    """Return the PostgreSQL database the async tests share."""
    database = postgresql_backend.database()
    yield database
    await database.dispose()


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> Database:
    """Run a test on each backend."""
    return request.getfixturevalue(f"{request.param}_database")
