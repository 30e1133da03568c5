"""Workers survive Redis going away: running jobs finish, pending ones come back after it.

Each test runs its own redis-server, `usher serve` and `usher worker` over its own data dir,
since it stops that Redis; the session's Usher and Redis are not touched.
"""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from sqlmodel import select

from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from fixtures.idp import okta_user
from tests.e2e.test_acme_actions import scim_patch
from tests.e2e.test_okta_create import scim_post, wait_job
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

OUTAGE_S = 12
CREATE_EVERY_S = 2
RELAY_EVERY_S = 1


class PrivateRedis:
    """A redis-server without persistence on a fixed port: stopped, it restarts empty."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def answers(self) -> bool:
        """Tell whether the server answers a PING."""
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Start the server and wait until it answers."""
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=self.log.open("ab"))
        wait_for(self.answers, 10, "the private redis-server")

    def kill(self) -> None:
        """Kill the server by its pid, as a crash would; it keeps nothing."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def private_redis(log_dir: Path) -> Iterator[PrivateRedis]:
    """Yield a private Redis (not yet started) on a free port; kill it at the end."""
    server = PrivateRedis(free_port(), log_dir / "redis.log")
    try:
        yield server
    finally:
        server.kill()


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


async def final_jobs(db: Database, identity_id: str) -> list[Job]:
    """Return every job of an identity."""
    async with db.session() as session:
        return list((await session.exec(select(Job).where(Job.identity_id == identity_id))).all())


async def test_a_worker_survives_redis_restarting_empty(tmp_path: Path) -> None:
    """Creates and updates during a Redis outage all land once, and the worker never exits."""
    with private_redis(tmp_path) as server:
        server.start()
        async with usher_stack(tmp_path, server) as stack:
            acme = stack.acme
            # Two users before the outage, renamed while Redis is down.
            early = {}
            for name in ("ada", "bo"):
                email = f"{name}.early@example.com"
                response = await scim_post(stack.connected, okta_user(email, name.title(), "Early"))
                assert response.status_code == 201, response.text
                early[email] = response.json()["id"]
            for identity_id in early.values():
                job = await wait_job(stack.db, identity_id, timeout_s=30)
                assert job.status == JobStatus.succeeded, job.error

            acme.state.slow_ms = 150  # jobs are still running when Redis goes
            created: dict[str, str] = {}

            async def create(index: int) -> None:
                email = f"user{index:02d}.outage@example.com"
                body = okta_user(email, f"User{index:02d}", "Outage")
                response = await scim_post(stack.connected, body)
                assert response.status_code == 201, response.text
                created[email] = response.json()["id"]

            for index in range(2):
                await create(index)
            await asyncio.sleep(0.5)
            server.kill()
            outage_started = time.monotonic()
            index = 2
            rename = {"op": "replace", "path": "name.familyName", "value": "Renamed"}
            for identity_id in early.values():
                await scim_patch(stack.connected, identity_id, rename)
            while time.monotonic() - outage_started < OUTAGE_S:
                assert stack.worker.poll() is None, stack.logs()
                await create(index)
                index += 1
                await asyncio.sleep(CREATE_EVERY_S)
            assert stack.worker.poll() is None, stack.logs()
            server.start()
            returned = time.monotonic()
            acme.state.slow_ms = 0
            await create(index)

            first_done: float | None = None
            for email, identity_id in {**created, **early}.items():
                job = await wait_job(stack.db, identity_id, timeout_s=45)
                first_done = first_done or time.monotonic()
                assert job.status == JobStatus.succeeded, (email, job.error, stack.logs())
                jobs = await final_jobs(stack.db, identity_id)
                failed = [j.error for j in jobs if j.status == JobStatus.failed]
                assert not failed, (email, failed)
                assert len(acme.state.users_with_email(email)) == 1, email
            for email in early:
                (user,) = acme.state.users_with_email(email)
                assert user.last_name == "Renamed", email
            assert stack.worker.poll() is None, stack.logs()
            assert stack.serve.poll() is None, stack.logs()
            worker_log = (stack.log_dir / "worker.log").read_text()
            assert "Traceback" not in worker_log, worker_log
            print(
                f"{len(created)} creates, {len(early)} renames; all final "
                f"{time.monotonic() - returned:.1f}s after Redis returned"
            )


async def test_a_worker_started_without_redis_waits_for_it(tmp_path: Path) -> None:
    """A worker started while Redis is down waits, logging a line per back-off, then works."""
    with private_redis(tmp_path) as server:
        data_dir, log_dir = tmp_path / "data", tmp_path / "logs"
        log_dir.mkdir()
        env = env_for(data_dir, server.url, free_port())
        early = start_process("worker", env, log_dir / "worker-early.log")
        try:
            await asyncio.sleep(4)
            assert early.poll() is None, (log_dir / "worker-early.log").read_text()
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
