"""Both databases Usher supports, migrated for this run: a SQLite file and a PostgreSQL schema.

PostgreSQL is `USHER_TEST_POSTGRES_URL` (default: the local server); a run fails loudly,
never skips silently, when it does not answer. `none` leaves PostgreSQL out on purpose.
"""

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from sqlalchemy import event, text

from engine.storage.db import Database

POSTGRES_ENV = "USHER_TEST_POSTGRES_URL"
POSTGRES_DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


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


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Database:
    """Run a test on each backend."""
    return request.getfixturevalue(f"{request.param}_database")
