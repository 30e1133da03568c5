"""A worker started while Redis is down waits for it instead of exiting.

The test runs its own redis-server, `usher serve` and `usher worker` over its own data dir,
since it starts that Redis late; the session's Usher and Redis are not touched. Redis going
away under running jobs is the fault suite's scenario 3 (tests/faults/test_redis_outage.py).
"""

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from fixtures.idp import okta_user
from tests.e2e.support import scim_post, wait_job
from tests.faults.support import PrivateRedis, private_redis
from tests.harness import (
    ROOT,
    Connected,
    connect_acme_at,
    free_port,
    start_process,
    stop_process,
    usher_env,
    wait_for,
    wait_healthy,
)

RELAY_EVERY_S = 1


@dataclass
class Stack:
    """A private Usher: its processes, database, Acme and connected integration."""

    serve: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    db: Database
    acme: AcmeServer
    connected: Connected
    log_dir: Path

    def logs(self) -> str:
        """Return what every process logged."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


def env_for(data_dir: Path, redis_url: str, port: int) -> dict[str, str]:
    """Return the environment of this file's Usher processes."""
    env = usher_env(data_dir, redis_url, port)
    env["USHER_RELAY_EVERY_S"] = str(RELAY_EVERY_S)
    return env


@asynccontextmanager
async def usher_stack(tmp_path: Path, server: PrivateRedis) -> AsyncIterator[Stack]:
    """Run `usher serve`, `usher worker` and Acme over a private data dir and Redis."""
    data_dir, log_dir = tmp_path / "data", tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    port = free_port()
    env = env_for(data_dir, server.url, port)
    api = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=data_dir, redis_url=server.url, flows_dir=ROOT / "flows")
    processes: list[subprocess.Popen[bytes]] = []
    db: Database | None = None
    try:
        serve = start_process("serve", env, log_dir / "serve.log")
        processes.append(serve)
        wait_healthy(api, serve, log_dir / "serve.log")
        worker = start_process("worker", env, log_dir / "worker.log")
        processes.append(worker)
        db = Database.from_settings(settings)
        with AcmeServer(AcmeState()) as acme:
            connected = await connect_acme_at(api, settings, db, acme)
            yield Stack(serve, worker, db, acme, connected, log_dir)
    finally:
        for process in reversed(processes):
            stop_process(process)
        if db is not None:
            await db.dispose()


async def test_a_worker_started_without_redis_waits_for_it(tmp_path: Path) -> None:
    """A worker started while Redis is down waits, logging a line per back-off, then works."""
    with private_redis(tmp_path) as server:
        data_dir, log_dir = tmp_path / "data", tmp_path / "logs"
        log_dir.mkdir()
        env = env_for(data_dir, server.url, free_port())
        early = start_process("worker", env, log_dir / "worker-early.log")
        try:
            early_log = log_dir / "worker-early.log"

            def waited_twice() -> bool:
                assert early.poll() is None, early_log.read_text()
                return early_log.read_text().count("unreachable") >= 2

            wait_for(waited_twice, 30, "the worker to wait for Redis twice")
            server.start()
            async with usher_stack(tmp_path, server) as stack:
                # The stack's own worker would take the job too; stop it so the early one must.
                stop_process(stack.worker)
                response = await scim_post(stack.connected, okta_user("late.start@example.com"))
                assert response.status_code == 201, response.text
                job = await wait_job(stack.db, response.json()["id"], timeout_s=45)
                assert job.status == JobStatus.succeeded, job.error
                assert job.worker and str(early.pid) in job.worker
                assert len(stack.acme.state.users_with_email("late.start@example.com")) == 1
            log = (log_dir / "worker-early.log").read_text()
            waits = [line for line in log.splitlines() if "Redis" in line and "unreachable" in line]
            assert 2 <= len(waits) <= 8, log
            assert "Traceback" not in log, log
        finally:
            stop_process(early)
