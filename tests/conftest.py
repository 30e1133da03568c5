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
from tests.harness import (
    ROOT,
    Connected,
    Usher,
    connect_acme,
    free_port,
    start_process,
    stop_process,
    usher_env,
    wait_for,
    wait_healthy,
)

pytest_plugins = ["tests.databases"]


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


@pytest.fixture(scope="session")
def usher(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Usher]:
    """Run `usher serve` and `usher worker` for the session."""
    data_dir = tmp_path_factory.mktemp("usher-data")
    log_dir = tmp_path_factory.mktemp("usher-logs")
    port = free_port()
    env = usher_env(data_dir, redis_url, port)
    serve = start_process("serve", env, log_dir / "serve.log")
    api = f"http://127.0.0.1:{port}"
    wait_healthy(api, serve, log_dir / "serve.log")
    worker = start_process("worker", env, log_dir / "worker.log")
    settings = Settings(data_dir=data_dir, redis_url=redis_url, flows_dir=ROOT / "flows")
    yield Usher(api, settings, redis_url, serve, worker, log_dir)
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
    with AcmeServer(AcmeState()) as server:
        yield server


@pytest.fixture
async def connected(usher: Usher, usher_db: Database, acme: AcmeServer) -> Connected:
    """Return a fresh Acme integration on the running Usher."""
    return await connect_acme(usher, usher_db, acme)
