"""What the fault scenarios share: a private Redis and database, Usher's real processes,
SCIM traffic as Okta sends it, and waits that read the database (the source of truth).

Every scenario runs its own stack: a redis-server it may kill, a database of its own
(a SQLite file, or a fresh PostgreSQL database it drops afterwards), `usher serve` and
one or more `usher worker` processes, each stopped by its pid when the scenario ends.
"""

import asyncio
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlmodel import col, select

from engine.jobs import state
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user, sample
from tests.databases import private_database
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

BUDGET = """Why the scenarios run tens of jobs where the issue says hundreds.

Every provisioning job is a real browser flow with a screenshot per step: about 3.5
CPU-seconds (Chromium's renderer, browser and GPU processes, the worker, Playwright), so two
cores finish about 0.6 jobs a second, and each stack (serve, workers, their Chromiums) costs
about 10 CPU-seconds more. The whole suite has about 12 minutes for both databases, which
`python -m tests.faults.run` runs side by side so that one's waits overlap the other's work.
Each scenario's size is a constant in its module, with what the issue asked for beside it.
"""

OKTA_CONCURRENCY = 16
"""How many SCIM requests Okta has in flight at once, here."""
RELAY_EVERY_S = 1
POLL_S = 0.25
LAUNCHED = re.compile(r"chromium (\d+ )?launched")
"""The line a worker logs once its browser is up, and again for each recycled one."""


TABLE_ENV = "USHER_TEST_FAULTS_TABLE"
"""Where a run writes its rows as JSON, for `python -m tests.faults.run` to join them."""
COLUMNS = ("scenario", "database", "expected", "observed", "seconds", "result")


@dataclass
class Outcome:
    """One scenario on one database: what it expected, what it saw, how long it took."""

    scenario: str
    database: str
    expected: str = ""
    observed: str = ""
    seconds: float = 0.0
    result: str = "not run"

    def row(self) -> dict[str, str]:
        """Return the table's cells."""
        return {
            "scenario": self.scenario,
            "database": self.database,
            "expected": self.expected,
            "observed": self.observed,
            "seconds": f"{self.seconds:.1f}",
            "result": self.result,
        }


def format_table(rows: list[dict[str, str]]) -> list[str]:
    """Return the lines of a table of scenarios, columns padded, and the total time."""
    lines = [list(COLUMNS), *([row.get(c, "") for c in COLUMNS] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    total = sum(float(row.get("seconds") or 0) for row in rows)
    return [*text, f"scenario time in all: {total:.0f}s"]


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
    """A private Usher: Redis, a database, `usher serve` and named `usher worker`s."""

    redis: PrivateRedis
    database_url: str
    api: str
    env: dict[str, str]
    settings: Settings
    log_dir: Path
    serve: subprocess.Popen[bytes]
    db: Database
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    retired: list[subprocess.Popen[bytes]] = field(default_factory=list)
    killed: set[str] = field(default_factory=set)

    def start_worker(self, name: str, **overrides: str) -> subprocess.Popen[bytes]:
        """Start `usher worker` with its own log, and env overrides (USHER_* names)."""
        process = start_process("worker", {**self.env, **overrides}, self.log_dir / f"{name}.log")
        if name in self.workers:
            self.retired.append(self.workers[name])
        self.workers[name] = process
        return process

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker by its pid, as a crash or the OOM killer would."""
        process = self.workers[name]
        self.killed.add(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def pid_of(self, name: str) -> int:
        """Return a worker's process id (it is part of the worker name jobs record)."""
        return self.workers[name].pid

    def log(self, name: str) -> str:
        """Return one process's log."""
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, tail: int = 12_000) -> str:
        """Return the end of every process's log, for an assertion's message."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"==> {path.name} <==\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def wait_ready(self, *names: str, timeout_s: float = 60) -> None:
        """Wait until the named workers have launched their Chromium, failing if one died."""

        def ready() -> bool:
            for name in names:
                if self.workers[name].poll() is not None:
                    raise AssertionError(f"{name} exited:\n{self.log(name)}")
            return all(LAUNCHED.search(self.log(name)) for name in names)

        wait_for(ready, timeout_s, f"workers {names} to launch Chromium")

    def alive(self) -> dict[str, bool]:
        """Tell which workers are still running, leaving out those a scenario killed."""
        return {
            name: process.poll() is None
            for name, process in self.workers.items()
            if name not in self.killed
        }

    async def connect(self, acme: AcmeServer) -> Connected:
        """Create an Acme integration with the service account's secrets."""
        return await connect_acme_at(self.api, self.settings, self.db, acme)

    def stop(self) -> None:
        """Stop every process this stack started, by its pid."""
        for process in [*self.workers.values(), *self.retired]:
            stop_process(process)
        stop_process(self.serve)


@asynccontextmanager
async def usher_stack(
    tmp_path: Path,
    kind: str,
    *,
    workers: Iterable[str] = ("worker-1", "worker-2"),
    env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """Run Redis, `usher serve` and the named workers over a private data dir and database."""
    data_dir, log_dir = tmp_path / "data", tmp_path / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with private_redis(log_dir) as server:
        server.start()
        async with private_database(kind, data_dir, "usher_faults") as database_url:
            port = free_port()
            process_env = usher_env(data_dir, server.url, port)
            process_env |= {
                "USHER_DATABASE_URL": database_url,
                "USHER_RELAY_EVERY_S": str(RELAY_EVERY_S),
                **(env or {}),
            }
            api = f"http://127.0.0.1:{port}"
            settings = Settings(
                data_dir=data_dir,
                redis_url=server.url,
                database_url=database_url,
                flows_dir=ROOT / "flows",
            )
            serve = start_process("serve", process_env, log_dir / "serve.log")
            db = Database.from_settings(settings)
            stack = Stack(server, database_url, api, process_env, settings, log_dir, serve, db)
            try:
                wait_healthy(api, serve, log_dir / "serve.log")
                for name in workers:
                    stack.start_worker(name)
                stack.wait_ready(*stack.workers)
                yield stack
            finally:
                stack.stop()
                await db.dispose()


class Okta:
    """Send SCIM to one integration as Okta does, at most OKTA_CONCURRENCY requests at once."""

    def __init__(self, connected: Connected, client: httpx.AsyncClient) -> None:
        self.connected = connected
        self.client = client
        self.headers = {
            "Authorization": f"Bearer {connected.token}",
            "Content-Type": "application/json",
        }

    async def create(self, email: str, given: str = "Fay", family: str = "Fault") -> str:
        """Assign a user to the app: POST /Users; return the identity id."""
        body = okta_user(email, given, family)
        response = await self.client.post(
            f"{self.connected.scim_url}/Users", json=body, headers=self.headers
        )
        assert response.status_code == 201, (email, response.status_code, response.text)
        return str(response.json()["id"])

    async def patch(self, identity_id: str, body: dict[str, Any]) -> None:
        """PATCH a user with a PatchOp body."""
        response = await self.client.patch(
            f"{self.connected.scim_url}/Users/{identity_id}", json=body, headers=self.headers
        )
        assert response.status_code in (200, 204), (identity_id, response.text)

    async def rename(self, identity_id: str, family: str) -> None:
        """Change the family name, as Okta's profile push does."""
        operation = {"op": "replace", "path": "name.familyName", "value": family}
        await self.patch(
            identity_id,
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [operation],
            },
        )

    async def deactivate(self, identity_id: str) -> None:
        """Unassign the user: Okta's deactivation PATCH (active false)."""
        await self.patch(identity_id, sample("okta", "deactivate"))


@asynccontextmanager
async def okta_client() -> AsyncIterator[httpx.AsyncClient]:
    """Yield one HTTP client for SCIM traffic, with room for OKTA_CONCURRENCY requests."""
    limits = httpx.Limits(max_connections=OKTA_CONCURRENCY, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        yield client


async def create_all(assignments: list[tuple[Okta, str]]) -> dict[str, str]:
    """Create every (integration, email) at OKTA_CONCURRENCY at once; return email → id."""
    gate = asyncio.Semaphore(OKTA_CONCURRENCY)
    created: dict[str, str] = {}

    async def one(okta: Okta, email: str) -> None:
        async with gate:
            created[email] = await okta.create(email)

    await asyncio.gather(*(one(okta, email) for okta, email in assignments))
    return created


async def jobs_of(db: Database, identity_ids: Iterable[str]) -> list[Job]:
    """Return every job of these identities."""
    ids = list(identity_ids)
    found: list[Job] = []
    async with db.session() as session:
        for start in range(0, len(ids), 500):
            query = select(Job).where(col(Job.identity_id).in_(ids[start : start + 500]))
            found.extend((await session.exec(query)).all())
    return found


def newest(jobs: Iterable[Job]) -> dict[str, Job]:
    """Return each identity's newest job."""
    by_identity: dict[str, Job] = {}
    for job in sorted(jobs, key=lambda j: j.created_at):
        by_identity[job.identity_id or ""] = job
    return by_identity


def status_counts(jobs: Iterable[Job]) -> dict[str, int]:
    """Count jobs per status."""
    return dict(Counter(str(job.status) for job in jobs))


async def wait_settled(
    db: Database, identity_ids: Iterable[str], timeout_s: float, stack: Stack | None = None
) -> dict[str, Job]:
    """Wait until every identity has jobs and all of them are final; return the newest each."""
    ids = list(identity_ids)
    deadline = time.monotonic() + timeout_s
    jobs: list[Job] = []
    while time.monotonic() < deadline:
        jobs = await jobs_of(db, ids)
        latest = newest(jobs)
        if len(latest) == len(ids) and all(j.status in state.FINAL for j in jobs):
            return latest
        if stack is not None:
            dead = [name for name, alive in stack.alive().items() if not alive]
            assert not dead, f"workers exited: {dead}\n{stack.logs()}"
        await asyncio.sleep(POLL_S)
    counts = status_counts(jobs)
    missing = len(ids) - len(newest(jobs))
    logs = stack.logs() if stack is not None else ""
    raise AssertionError(
        f"after {timeout_s}s not settled: {counts}, {missing} identities without a job\n{logs}"
    )


def failed_jobs(jobs: Iterable[Job]) -> list[Job]:
    """Return the jobs that ended failed (or parked: blocked, action_required)."""
    bad = {JobStatus.failed, JobStatus.blocked, JobStatus.action_required}
    return [job for job in jobs if job.status in bad]


def account_counts(acme: AcmeServer, emails: Iterable[str]) -> dict[int, int]:
    """Count identities by how many Acme accounts carry their email: {1: n} is all good."""
    return dict(Counter(len(acme.state.users_with_email(email)) for email in emails))


def doubled(counts: dict[int, int]) -> int:
    """Return how many identities have more than one account."""
    return sum(n for accounts, n in counts.items() if accounts > 1)


def tracebacks(stack: Stack) -> list[str]:
    """Return the names of process logs that show a Python traceback."""
    return [p.name for p in sorted(stack.log_dir.glob("*.log")) if "Traceback" in p.read_text()]
