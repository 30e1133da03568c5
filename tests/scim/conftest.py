"""The SCIM tests' fixtures: a SCIM-only Usher over HTTP, and the storage's own databases.

The protocol tests run `usher serve` without a worker, on its own data. The IdP conversations
and scim2-tester create hundreds of users; with a worker each would drive Chromium through
Acme. Without one their jobs stay queued, which is also what the dirty-marking tests look at.
The server is the real one, over HTTP.

The storage tests run `SqlScimStorage` on a SQLite file and on a PostgreSQL schema of their
own (`USHER_TEST_POSTGRES_URL`), each test in a session rolled back at its end.
"""

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from scim2_models import ScimProvider
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from typer.testing import CliRunner

from engine.apps.integrations import create_api_token, create_integration
from engine.scim.provider import build_provider
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Identity, Job, Membership, ScimGroup, utcnow
from tests.databases import SERVED, served_database
from tests.harness import (
    ROOT,
    free_port,
    other_redis_db,
    start_process,
    stop_process,
    usher_env,
    wait_healthy,
)
from tests.scim.directory import (
    Directory,
    StatementLog,
    open_directory,
    recording,
)

SCIM_JSON = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
REDIS_DBS = {"sqlite": 15, "postgresql": 13}
"""The Redis databases these servers' jobs go to, which no worker reads."""


@dataclass
class ScimServer:
    """A running `usher serve` and the Settings of its data dir."""

    api: str
    settings: Settings
    log: Path


@dataclass
class Scim:
    """One integration of the SCIM server: its URL, token, and an operator token."""

    id: str
    url: str
    token: str
    operator: str
    client: httpx.Client

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send a SCIM request with the integration's token, as an IdP would."""
        sent = {"Authorization": f"Bearer {self.token}", "Content-Type": SCIM_JSON}
        sent.update(headers or {})
        if content is None and body is not None:
            content = json.dumps(body).encode()
        return self.client.request(
            method, f"{self.url}{path}", content=content, headers=sent, params=params
        )

    def ok(
        self, method: str, path: str, body: object = None, *, params: dict[str, str] | None = None
    ) -> dict:
        """Send a SCIM request that must succeed; return its JSON body, if it has one."""
        response = self.call(method, path, body, params=params)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        assert response.headers["content-type"].startswith(SCIM_JSON)
        return response.json() if response.content else {}

    def user(self, user_name: str, **values: object) -> dict:
        """Create a user and return it."""
        body = {"schemas": [USER_SCHEMA], "userName": user_name, **values}
        return self.ok("POST", "/Users", body)


@pytest.fixture(scope="session", params=SERVED)
def scim_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[ScimServer]:
    """Run `usher serve` alone over a fresh data dir, on SQLite and on PostgreSQL."""
    data_dir = tmp_path_factory.mktemp(f"scim-data-{request.param}")
    log = tmp_path_factory.mktemp(f"scim-logs-{request.param}") / "serve.log"
    queue_url = other_redis_db(redis_url, REDIS_DBS[request.param])
    redis.Redis.from_url(queue_url).flushdb()
    with served_database(request.param, data_dir) as database_url:
        port = free_port()
        env = {**usher_env(data_dir, queue_url, port), "USHER_DATABASE_URL": database_url}
        process = start_process("serve", env, log)
        api = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(api, process, log)
            settings = Settings(
                data_dir=data_dir, database_url=database_url, flows_dir=ROOT / "flows"
            )
            yield ScimServer(api, settings, log)
        finally:
            stop_process(process)


@pytest.fixture
def cli(scim_server: ScimServer, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run the CLI on the SCIM server's data dir and database, as an admin there would."""
    monkeypatch.setenv("USHER_DATA_DIR", str(scim_server.settings.data_dir))
    monkeypatch.setenv("USHER_DATABASE_URL", scim_server.settings.resolved_database_url)
    monkeypatch.setenv("USHER_FLOWS_DIR", str(ROOT / "flows"))
    monkeypatch.delenv("USHER_REDIS_URL", raising=False)
    return CliRunner()


@pytest.fixture(scope="session")
async def scim_db(scim_server: ScimServer) -> AsyncIterator[Database]:
    """Open the SCIM server's database for set-up and inspection."""
    db = Database.from_settings(scim_server.settings)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """Share one HTTP client: connection set-up is most of a local request."""
    with httpx.Client(timeout=30) as client:
        yield client


async def new_integration(server: ScimServer, db: Database, http: httpx.Client) -> Scim:
    """Create an Acme integration on the SCIM server, with an operator token."""
    async with db.session() as session:
        integration, token = await create_integration(
            session, server.settings, app="acme", base_url="http://127.0.0.1:9"
        )
        operator = await create_api_token(session, "scim-tests")
    url = f"{server.api}/scim/v2/{integration.id}"
    return Scim(integration.id, url, token, operator, http)


@pytest.fixture
async def scim(scim_server: ScimServer, scim_db: Database, http: httpx.Client) -> Scim:
    """Return a fresh integration: every test starts with an empty directory."""
    return await new_integration(scim_server, scim_db, http)


async def identity_row(db: Database, identity_id: str) -> Identity:
    """Return the stored Identity of a SCIM user, deleted or not."""
    async with db.session() as session:
        identity = await session.get(Identity, identity_id)
    assert identity is not None, identity_id
    return identity


async def group_row(db: Database, group_id: str) -> ScimGroup:
    """Return the stored ScimGroup of a SCIM group, deleted or not."""
    async with db.session() as session:
        group = await session.get(ScimGroup, group_id)
    assert group is not None, group_id
    return group


async def member_ids(db: Database, group_id: str) -> set[str]:
    """Return the member ids stored for a group."""
    async with db.session() as session:
        query = select(Membership.member_id).where(Membership.group_id == group_id)
        return set((await session.exec(query)).all())


async def queued_jobs(db: Database, integration_id: str) -> list[Job]:
    """Return an integration's queued jobs: the dirty marks no worker has taken yet."""
    async with db.session() as session:
        query = select(Job).where(Job.integration_id == integration_id, Job.status == "queued")
        return list((await session.exec(query)).all())


async def settle(db: Database, integration_id: str) -> None:
    """Finish every queued job of an integration, as a worker would, so new marks stand out."""
    async with db.session() as session:
        await session.exec(
            update(Job)
            .where(col(Job.integration_id) == integration_id, col(Job.status) == "queued")
            .values(status="succeeded", finished_at=utcnow())
        )
        await session.commit()


# The storage tests: SqlScimStorage on each backend, without a server.


@pytest.fixture(scope="session")
def provider() -> ScimProvider:
    """Return Usher's provider: User with the enterprise extension, Group, the catalogue."""
    return build_provider()


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    """Yield a session that is rolled back after the test."""
    async with database.session() as session:
        yield session


@pytest.fixture
async def directory(session: AsyncSession, provider: ScimProvider) -> Directory:
    """Return a Directory over a new integration."""
    return await open_directory(session, provider)


@pytest.fixture
def statements(database: Database) -> Iterator[StatementLog]:
    """Record the statements the engine runs during a test."""
    with recording(database) as log:
        yield log
