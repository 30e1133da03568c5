"""Real parts for every test: a private redis-server, Usher's processes, Acme over HTTP."""

import os
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from engine.settings import Settings
from engine.storage.db import Database
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from fixtures.globex.server import GlobexServer
from fixtures.globex.state import GlobexState
from tests.databases import (  # noqa: F401 (the database fixtures, for every test)
    SERVED,
    database,
    postgresql_backend,
    postgresql_database,
    served_database,
    sqlite_backend,
    sqlite_database,
)
from tests.harness import (
    ROOT,
    Connected,
    Usher,
    connect_acme,
    connect_globex,
    free_port,
    other_redis_db,
    start_process,
    stop_process,
    usher_env,
    wait_for,
    wait_healthy,
)
from tests.webhooks import Receiver, running_receiver

TEST_TOTP_PERIOD_S = 10
"""Acme's and Globex's codes in the tests last ten seconds, handed to Usher as an otpauth
URI: a second sign-in waits for a fresh code at most that long, not a 30-second window."""
USHER_REDIS_DBS = {"sqlite": 1, "postgresql": 2}
"""The Redis database of each session Usher's queue (tests/scim uses 15, tests/jobs 14)."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run when `--dist loadgroup` no longer groups: each worker would start every
    database's Usher processes and restart them as the tests switch (pytest-xdist#1386)."""
    if getattr(config.option, "loadgroup", False):
        lost = [
            i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid
        ]
        if lost:
            raise pytest.UsageError(
                f"--dist loadgroup dropped the xdist_group of {len(lost)} tests (first: {lost[0]});"
                " this pytest and pytest-xdist do not group (pytest-dev/pytest-xdist#1386)"
            )


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Return USHER_TEST_REDIS_URL, else a private redis-server on a free port."""
    given = os.environ.get("USHER_TEST_REDIS_URL")
    if given:
        redis.Redis.from_url(given).flushdb()
        yield given
        return
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.ConnectionError:
            return False

    wait_for(answers, 10, "the private redis-server")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session", params=SERVED)
def usher(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[Usher]:
    """Run `usher serve` and `usher worker` for the session, on SQLite and on PostgreSQL.

    Each database gets its own Redis database, so that one Usher's worker never takes the
    other's jobs when pytest runs both in one session.
    """
    data_dir = tmp_path_factory.mktemp(f"usher-data-{request.param}")
    log_dir = tmp_path_factory.mktemp(f"usher-logs-{request.param}")
    queue_url = other_redis_db(redis_url, USHER_REDIS_DBS[request.param])
    redis.Redis.from_url(queue_url).flushdb()
    with served_database(request.param, data_dir) as database_url:
        port = free_port()
        env = {**usher_env(data_dir, queue_url, port), "USHER_DATABASE_URL": database_url}
        serve = start_process("serve", env, log_dir / "serve.log")
        api = f"http://127.0.0.1:{port}"
        worker: subprocess.Popen[bytes] | None = None
        try:
            wait_healthy(api, serve, log_dir / "serve.log")
            worker = start_process("worker", env, log_dir / "worker.log")
            settings = Settings(
                data_dir=data_dir,
                database_url=database_url,
                redis_url=queue_url,
                flows_dir=ROOT / "flows",
            )
            yield Usher(api, settings, queue_url, serve, worker, log_dir, database_url)
        finally:
            if worker is not None:
                stop_process(worker)
            stop_process(serve)


@pytest.fixture(scope="session")
async def usher_db(usher: Usher) -> AsyncIterator[Database]:
    """Open the running Usher's database for set-up and inspection."""
    db = Database.from_settings(usher.settings)
    yield db
    await db.dispose()


@pytest.fixture
def acme() -> Iterator[AcmeServer]:
    """Run a fresh Acme for one test."""
    with AcmeServer(AcmeState(totp_period_s=TEST_TOTP_PERIOD_S)) as server:
        yield server


@pytest.fixture
async def connected(usher: Usher, usher_db: Database, acme: AcmeServer) -> Connected:
    """Return a fresh Acme integration on the running Usher."""
    return await connect_acme(usher, usher_db, acme)


@pytest.fixture
def globex() -> Iterator[GlobexServer]:
    """Run a fresh Globex for one test."""
    with GlobexServer(GlobexState(totp_period_s=TEST_TOTP_PERIOD_S)) as server:
        yield server


@pytest.fixture
async def globex_connected(usher: Usher, usher_db: Database, globex: GlobexServer) -> Connected:
    """Return a fresh Globex integration on the running Usher."""
    return await connect_globex(usher, usher_db, globex)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Run a customer's webhook endpoint that checks every signature and answers 204."""
    with running_receiver(fail=0) as server:
        yield server
