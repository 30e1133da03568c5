"""`usher bench`: Usher against baselines served and run the same way, in one run.

Every pair is measured in the same run, after a warm-up, its two sides alternated round by
round, on the defaults a user gets: `usher serve` and `usher worker` as separate processes
over an embedded Redis and the default SQLite file (PostgreSQL too when given), the real
Acme fixture app, Chromium as the worker launches it. The rows and their targets are the
ones README.md explains; a target is reported, never enforced here.
"""

import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, select

from cli.demo import free_port
from cli.embedded import EmbeddedRedis
from engine.apps.integrations import create_integration, set_secrets
from engine.apps.template import app_path
from engine.automation.browser import find_chromium, launch_args
from engine.automation.sessions import load_session
from engine.constants import BROWSER_VIEWPORT, MASK_COLOR, MIB
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Evidence, Job
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState

SCIM_CONCURRENCY = 8
"""Requests in flight at once in the SCIM rows, on both sides."""
VISIBLE_POLL_S = 0.02
"""How often the bench looks in Acme for the account a job is creating, on both sides."""
JOB_WAIT_S = 180.0
"""How long one account may take to appear in Acme before the bench gives up."""
START_WAIT_S = 120.0
"""How long a process the bench started may take to answer."""
PSS_SAMPLE_S = 0.25
"""How often the memory of the process trees is read during the throughput runs."""
BENCH_TOTP_PERIOD_S = 10
"""Acme's codes last ten seconds here, as in the tests: a first sign-in waits less for one."""
LIFTED_PACE = 1_000_000
"""Actions a minute in the bench's copy of Acme's template: the rate limit lifted."""
BENCH_CONCURRENCY = 2
"""Jobs at once per integration in the bench's copy of Acme's template: the worker's slots."""
KIB = 1024
LOG_TAIL_BYTES = 4000


class BenchError(Exception):
    """The bench could not measure: a process did not start, a request or a job failed."""


@dataclass(frozen=True)
class Plan:
    """How many samples each row takes."""

    scim_rounds: int
    scim_requests: int
    jobs: int
    bursts: int
    burst_jobs: int
    quick: bool

    def describe(self) -> dict[str, Any]:
        """Say how many samples were taken, for the report."""
        return {
            "quick": self.quick,
            "scim_rounds": self.scim_rounds,
            "scim_requests_per_round": self.scim_requests,
            "scim_concurrency": SCIM_CONCURRENCY,
            "job_create_samples": self.jobs,
            "throughput_bursts": self.bursts,
            "jobs_per_burst": self.burst_jobs,
        }


FULL = Plan(scim_rounds=20, scim_requests=40, jobs=20, bursts=2, burst_jobs=10, quick=False)
QUICK = Plan(scim_rounds=3, scim_requests=16, jobs=2, bursts=1, burst_jobs=4, quick=True)
"""Enough to see that every row works; too few samples to judge a target by."""


@dataclass(frozen=True)
class Target:
    """What a row should reach: its ratio or its value, at least or at most a bound."""

    on: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.on} {self.op} {self.bound:g}"

    def met(self, row: "Row") -> bool:
        """Tell whether a row reaches the target."""
        measured = row.ratio if self.on == "ratio" else row.value
        return measured >= self.bound if self.op == ">=" else measured <= self.bound


REPORTED = "reported"


@dataclass
class Row:
    """One measured quantity next to its baseline from the same run."""

    name: str
    value: float
    baseline: float
    target: Target | None
    unit: str
    p50: float | None = None
    p95: float | None = None

    @property
    def ratio(self) -> float:
        """Return the value in baselines."""
        return self.value / self.baseline if self.baseline else math.inf

    def as_json(self) -> dict[str, Any]:
        """Return the row as the JSON report carries it."""
        return {
            "name": self.name,
            "value": _round(self.value),
            "baseline": _round(self.baseline),
            "ratio": _round(self.ratio),
            "target": str(self.target) if self.target else REPORTED,
            "unit": self.unit,
            "p50": _round(self.p50),
            "p95": _round(self.p95),
        }


def _round(number: float | None) -> float | None:
    """Round for the report, keeping small values readable."""
    return None if number is None else round(number, 3)


def percentile(values: list[float], share: float) -> float:
    """Return a percentile of values (share in 0..100), interpolated between neighbours."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * share / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Report:
    """Every row of one bench run, what was sampled and how loaded the machine was."""

    rows: list[Row]
    plan: Plan
    load_before: str
    load_after: str

    def as_json(self) -> dict[str, Any]:
        """Return the report as `--json` prints it."""
        return {
            "samples": self.plan.describe(),
            "load_before": self.load_before,
            "load_after": self.load_after,
            "rows": [row.as_json() for row in self.rows],
        }

    def as_text(self) -> str:
        """Return the report as a table, with the samples and the machine's load."""
        samples = ", ".join(f"{k}={v}" for k, v in self.plan.describe().items())
        lines = [
            f"samples: {samples}"
            + (" (quick: too few to judge a target)" if self.plan.quick else ""),
            f"load average before: {self.load_before}; after: {self.load_after}",
            f"{'row':<22} {'value':>10} {'baseline':>10} {'ratio':>7}  {'target':<14}"
            f" {'met':<4} {'unit':<9} {'p50':>9} {'p95':>9}",
        ]
        for row in self.rows:
            met = "-" if row.target is None else ("yes" if row.target.met(row) else "no")
            p50 = "-" if row.p50 is None else f"{row.p50:.2f}"
            p95 = "-" if row.p95 is None else f"{row.p95:.2f}"
            lines.append(
                f"{row.name:<22} {row.value:>10.2f} {row.baseline:>10.2f} {row.ratio:>7.2f}"
                f"  {row.target or REPORTED!s:<14} {met:<4} {row.unit:<9} {p50:>9} {p95:>9}"
            )
        return "\n".join(lines)


def load_average() -> str:
    """Return the machine's load averages (1, 5, 15 minutes), as /proc says."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# Processes


class Processes:
    """The processes the bench starts, each logging to a file, all stopped at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `python -m ARGS` with its output in NAME.log."""
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.started.append((name, process))
        return process

    def tail(self) -> str:
        """Return the end of every log, to say why something failed."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            data = path.read_bytes()[-LOG_TAIL_BYTES:].decode(errors="replace")
            parts.append(f"--- {path.name}\n{data}")
        return "\n".join(parts)

    def stop_all(self, prefix: str = "") -> None:
        """Stop every process whose name starts with a prefix, the last started first:
        SIGTERM, then SIGKILL."""
        chosen = [p for name, p in reversed(self.started) if name.startswith(prefix)]
        for process in chosen:
            if process.poll() is None:
                process.terminate()
        for process in chosen:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def usher_env(**settings: str) -> dict[str, str]:
    """Return an environment with no USHER_* setting but the bench's own: Usher's defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USHER_")}
    env.update({f"USHER_{name.upper()}": value for name, value in settings.items()})
    return env


async def wait_answering(
    url: str, process: subprocess.Popen[bytes], processes: Processes, what: str
) -> None:
    """Wait until a URL answers 200, failing with the logs if the process died."""
    deadline = time.monotonic() + START_WAIT_S
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"{what} exited with {process.returncode}\n{processes.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise BenchError(f"{what} did not answer within {START_WAIT_S:g} s\n{processes.tail()}")


def lifted_flows(root: Path) -> Path:
    """Copy Acme's template with its rate limit lifted and BENCH_CONCURRENCY jobs at once.

    The copy is a deployment's own app (USHER_FLOWS_DIR), found before the built-in one.
    """
    flows = root / "flows"
    source = app_path(None, "acme").parent
    shutil.copytree(source, flows / "acme")
    app_yaml = flows / "acme" / "app.yaml"
    data = yaml.safe_load(app_yaml.read_text())
    data["limits"] = {"concurrency": BENCH_CONCURRENCY, "actions_per_minute": LIFTED_PACE}
    app_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return flows


# One Usher on one database


@dataclass
class Stack:
    """A running Usher (serve and worker) on one database, with its own Acme and integration."""

    name: str
    api: str
    settings: Settings
    db: Database
    acme: AcmeServer
    worker: subprocess.Popen[bytes]
    integration_id: str = ""
    token: str = ""

    @property
    def scim_url(self) -> str:
        """Return the integration's SCIM base URL."""
        return f"{self.api}/scim/v2/{self.integration_id}"


async def start_stack(
    name: str,
    root: Path,
    flows: Path,
    redis_url: str,
    processes: Processes,
    acme: AcmeServer,
    database_url: str | None = None,
) -> Stack:
    """Migrate a database, connect Acme to it, then start `usher serve` and `usher worker`."""
    data_dir = root / name
    settings = Settings(
        data_dir=data_dir, flows_dir=flows, database_url=database_url, isolated_dns=True
    )
    settings.ensure_data_dir()
    db = Database.from_settings(settings)
    await db.migrate()
    port = free_port()
    env = usher_env(
        data_dir=str(data_dir),
        redis_url=redis_url,
        port=str(port),
        flows_dir=str(flows),
        isolated_dns="true",
        **({"database_url": database_url} if database_url else {}),
    )
    async with db.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url=acme.url, import_accounts=False
        )
        vault = Vault.from_path(settings.vault_key_path)
        await set_secrets(session, settings, vault, integration.id, acme.state.service_account())
    serve = processes.start(f"{name}-serve", ["cli", "serve"], env)
    worker = processes.start(f"{name}-worker", ["cli", "worker"], env)
    stack = Stack(name, f"http://127.0.0.1:{port}", settings, db, acme, worker)
    stack.integration_id, stack.token = integration.id, token
    await wait_answering(f"{stack.api}/readyz", serve, processes, f"usher serve ({name})")
    return stack


@contextlib.asynccontextmanager
async def throwaway_database(server_url: str) -> AsyncIterator[str]:
    """Create an empty PostgreSQL database on a server for this run, and drop it after."""
    server = make_url(server_url)
    name = f"usher_bench_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception):
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


# Accounts and jobs


@dataclass(frozen=True)
class Person:
    """Someone the IdP creates: the SCIM body for Usher, the fields for the bare script."""

    email: str
    first: str
    last: str

    def scim(self) -> dict[str, Any]:
        """Return an Okta-like POST /Users body."""
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": self.email,
            "name": {"givenName": self.first, "familyName": self.last},
            "emails": [{"value": self.email, "primary": True, "type": "work"}],
            "displayName": f"{self.first} {self.last}",
            "active": True,
        }


class People:
    """Hand out people never seen before in this run."""

    def __init__(self) -> None:
        self.count = 0

    def next(self, tag: str) -> Person:
        """Return a new person whose email carries a tag (the side and the row)."""
        self.count += 1
        return Person(f"{tag}-{self.count}@bench.test", "Bench", f"Person{self.count}")


async def wait_visible(acme: AcmeServer, email: str) -> float:
    """Wait until the account exists in Acme; return when it was seen (monotonic)."""
    deadline = time.monotonic() + JOB_WAIT_S
    while not acme.state.users_with_email(email):
        if time.monotonic() > deadline:
            raise BenchError(f"{email} did not appear in Acme within {JOB_WAIT_S:g} s")
        await asyncio.sleep(VISIBLE_POLL_S)
    return time.monotonic()


class UsherSide:
    """Create accounts through Usher: a SCIM POST, then the worker's job."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient) -> None:
        self.stack = stack
        self.client = client

    async def post(self, person: Person) -> float:
        """POST the user; return when the request was sent (monotonic)."""
        started = time.monotonic()
        response = await self.client.post(
            f"{self.stack.scim_url}/Users",
            json=person.scim(),
            headers={"Authorization": f"Bearer {self.stack.token}"},
        )
        if response.status_code != 201:
            raise BenchError(f"Usher answered {response.status_code}: {response.text[:300]}")
        return started

    async def create(self, person: Person) -> float:
        """Return the seconds from the POST to the account seen in Acme."""
        started = await self.post(person)
        return await wait_visible(self.stack.acme, person.email) - started


class BareSide:
    """The bare Playwright process (cli/bench_bare.py), told what to create over a pipe."""

    def __init__(self, process: asyncio.subprocess.Process, acme: AcmeServer) -> None:
        self.process = process
        self.acme = acme
        self.shots: list[int] = []

    @classmethod
    async def spawn(cls, setup_file: Path, acme: AcmeServer, log: Path) -> "BareSide":
        """Start the bare process; `ready` waits for its Chromium."""
        with log.open("ab") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli.bench_bare",
                str(setup_file),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
            )
        return cls(process, acme)

    async def ready(self) -> None:
        """Wait until the process says its Chromium is up."""
        await self._answer()

    async def _answer(self) -> dict[str, Any]:
        """Read the process's next answer; fail when it ended instead."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), JOB_WAIT_S)
        if not line:
            raise BenchError("the bare Playwright process ended (see bare.log)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def sign_in(self, state: dict[str, Any]) -> None:
        """Give the process the signed-in state its contexts start with."""
        await self._send({"state": state})
        await self._answer()

    async def _send(self, command: dict[str, Any]) -> None:
        """Write one command line."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()

    async def run(self, people: list[Person]) -> list[float]:
        """Create people one after another; return when each was seen in Acme (monotonic)."""
        await self._send({"create": [[p.email, p.first, p.last] for p in people]})
        answer = await self._answer()
        self.shots += answer["shots"]
        return [await wait_visible(self.acme, p.email) for p in people]

    async def create(self, person: Person) -> float:
        """Return the seconds from the command to the account seen in Acme."""
        started = time.monotonic()
        (seen,) = await self.run([person])
        return seen - started

    @property
    def pid(self) -> int:
        """Return the process id, the root of the tree whose memory is read."""
        return self.process.pid

    async def close(self) -> None:
        """Tell the process to quit and wait for it."""
        if self.process.returncode is None and self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.process.stdin.write(b'{"quit": true}\n')
                await self.process.stdin.drain()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def bare_setup(settings: Settings, acme: AcmeServer, path: Path) -> Path:
    """Write the bare process's setup: Chromium as the worker launches it, Acme, the
    viewport, the mask and the step timeout the worker uses."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        executable = find_chromium(settings, playwright)
    setup = {
        "executable": str(executable) if executable else None,
        "args": launch_args(settings),
        "base_url": acme.url,
        "mask_color": MASK_COLOR,
        "viewport": BROWSER_VIEWPORT,
        "timeout_ms": settings.step_timeout_ms,
    }
    write_private(path, json.dumps(setup))
    return path


async def kept_state(stack: Stack) -> dict[str, Any]:
    """Return the session Usher's worker signed in with: the bare side's signed-in state."""
    async with stack.db.reader() as session:
        kept = await load_session(
            session, Vault.from_path(stack.settings.vault_key_path), stack.integration_id
        )
    if kept is None:
        raise BenchError("Usher's worker kept no session after its first job")
    return {k: kept.state[k] for k in ("cookies", "origins") if k in kept.state}


def write_private(path: Path, content: str) -> None:
    """Write a file only its owner may read: it carries a signed-in session."""
    path.touch(mode=0o600)
    path.write_text(content)


# Memory


def process_tree(root: int) -> list[int]:
    """Return a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def pss_mib(pids: list[int]) -> float:
    """Return the proportional set size of processes, summed, in MiB."""
    total_kib = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
                    break
    return total_kib * KIB / MIB


@contextlib.asynccontextmanager
async def sampling_pss(root: int, samples: list[float]) -> AsyncIterator[None]:
    """Read the process tree's memory every PSS_SAMPLE_S while the block runs."""

    async def sample() -> None:
        while True:
            samples.append(pss_mib(process_tree(root)))
            await asyncio.sleep(PSS_SAMPLE_S)

    task = asyncio.create_task(sample())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        samples.append(pss_mib(process_tree(root)))


# The rows


def alternated(index: int) -> bool:
    """Tell whether Usher goes first in a round: every other round."""
    return index % 2 == 0


async def job_rows(
    usher: UsherSide, bare: BareSide, people: People, plan: Plan
) -> tuple[Row, list[float]]:
    """Time creates one at a time: SCIM POST → account in Acme, against the bare script."""
    usher_s: list[float] = []
    bare_s: list[float] = []
    bare.shots = []
    for index in range(plan.jobs):
        sides: list[Callable[[], Any]] = [
            lambda: _timed(usher_s, usher.create(people.next("usher-job"))),
            lambda: _timed(bare_s, bare.create(people.next("bare-job"))),
        ]
        for side in sides if alternated(index) else reversed(sides):
            await side()
    row = Row(
        "job_create",
        statistics.median(usher_s),
        statistics.median(bare_s),
        Target("ratio", "<=", 1.25),
        "s",
        percentile(usher_s, 50),
        percentile(usher_s, 95),
    )
    return row, [size / KIB for size in bare.shots]


async def _timed(into: list[float], work: Any) -> None:
    """Await one timed sample and keep it."""
    into.append(await work)


async def throughput_rows(
    usher: UsherSide, bare: BareSide, people: People, plan: Plan
) -> list[Row]:
    """Time bursts of creates: Usher's worker at its two slots against a sequential loop."""
    usher_time = bare_time = 0.0
    usher_jobs: list[float] = []
    usher_pss: list[float] = []
    bare_pss: list[float] = []
    for index in range(plan.bursts):

        async def usher_burst() -> None:
            nonlocal usher_time
            burst = [people.next("usher-burst") for _ in range(plan.burst_jobs)]
            async with sampling_pss(usher.stack.worker.pid, usher_pss):
                started = time.monotonic()
                sent = [await usher.post(person) for person in burst]
                seen = await asyncio.gather(
                    *(wait_visible(usher.stack.acme, p.email) for p in burst)
                )
                usher_time += time.monotonic() - started
            usher_jobs.extend(s - t for s, t in zip(seen, sent, strict=True))

        async def bare_burst() -> None:
            nonlocal bare_time
            burst = [people.next("bare-burst") for _ in range(plan.burst_jobs)]
            async with sampling_pss(bare.pid, bare_pss):
                started = time.monotonic()
                await bare.run(burst)
                bare_time += time.monotonic() - started

        for burst in (usher_burst, bare_burst) if alternated(index) else (bare_burst, usher_burst):
            await burst()
    jobs = plan.bursts * plan.burst_jobs
    return [
        Row(
            "throughput",
            jobs / usher_time * 60,
            jobs / bare_time * 60,
            Target("ratio", ">=", 1.6),
            "jobs/min",
            percentile(usher_jobs, 50),
            percentile(usher_jobs, 95),
        ),
        Row(
            "pss_c2_mib",
            max(usher_pss),
            max(bare_pss),
            Target("value", "<=", 900),
            "MiB",
            percentile(usher_pss, 50),
            percentile(usher_pss, 95),
        ),
    ]


async def evidence_row(stack: Stack, bare_kib: list[float]) -> Row:
    """Compare the screenshots Usher kept per step with the bare script's."""
    async with stack.db.reader() as session:
        sizes = (
            await session.exec(
                select(Evidence.size)
                .join(Job, col(Job.id) == col(Evidence.job_id))
                .where(Job.integration_id == stack.integration_id, Evidence.kind == "screenshot")
            )
        ).all()
    kib = [size / KIB for size in sizes]
    if not kib or not bare_kib:
        raise BenchError("no screenshots were kept to size")
    return Row(
        "evidence_kb_per_step",
        statistics.fmean(kib),
        statistics.fmean(bare_kib),
        Target("value", "<=", 150),
        "KiB",
        percentile(kib, 50),
        percentile(kib, 95),
    )


@dataclass
class Burst:
    """One round of SCIM requests at SCIM_CONCURRENCY: how long it took, each latency."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class ScimSide:
    """One SCIM server as the client sees it: its base URL, token, and what it created."""

    name: str
    client: httpx.AsyncClient
    base_url: str
    created: list[str] = field(default_factory=list)
    rates: dict[str, list[float]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    async def burst(self, method: str, calls: list[dict[str, Any]], expected: int) -> Burst:
        """Send calls SCIM_CONCURRENCY at a time; every answer must be the expected status."""
        pending = iter(calls)
        burst = Burst(0.0)

        async def work() -> None:
            for call in pending:
                started = time.perf_counter()
                response = await self.client.request(method, f"{self.base_url}/Users", **call)
                burst.latencies_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code != expected:
                    raise BenchError(
                        f"{self.name} answered {method} with {response.status_code}:"
                        f" {response.text[:300]}"
                    )

        started = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(SCIM_CONCURRENCY)))
        burst.seconds = time.perf_counter() - started
        return burst

    async def posts(self, people: People, count: int, *, keep: bool) -> None:
        """Create `count` users; keep the rate and latencies unless warming up."""
        batch = [people.next(f"scim-{self.name}") for _ in range(count)]
        burst = await self.burst("POST", [{"json": p.scim()} for p in batch], 201)
        self.created += [p.email for p in batch]
        if keep:
            self._keep("POST", burst, count)

    async def gets(self, count: int, *, keep: bool) -> None:
        """Look up `count` known users by userName, as an IdP does before it creates."""
        names = [random.choice(self.created) for _ in range(count)]
        calls = [{"params": {"filter": f'userName eq "{name}"'}} for name in names]
        burst = await self.burst("GET", calls, 200)
        if keep:
            self._keep("GET", burst, count)

    def _keep(self, method: str, burst: Burst, count: int) -> None:
        """Keep one round's rate and latencies."""
        self.rates.setdefault(method, []).append(count / burst.seconds)
        self.latencies.setdefault(method, []).extend(burst.latencies_ms)


@contextlib.asynccontextmanager
async def scim_client(token: str) -> AsyncIterator[httpx.AsyncClient]:
    """Yield a keep-alive client with a bearer token and SCIM_CONCURRENCY connections."""
    limits = httpx.Limits(
        max_connections=SCIM_CONCURRENCY, max_keepalive_connections=SCIM_CONCURRENCY
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=JOB_WAIT_S) as client:
        yield client


async def scim_rows(
    stack: Stack, baseline_url: str, baseline_token: str, people: People, plan: Plan, suffix: str
) -> list[Row]:
    """Time POST /Users and filtered GETs at SCIM_CONCURRENCY against scim2-server's own
    in-memory app, while Usher's worker drains the jobs the POSTs create."""
    async with scim_client(stack.token) as usher_client, scim_client(baseline_token) as base:
        usher = ScimSide("usher", usher_client, stack.scim_url)
        theirs = ScimSide("scim2-server", base, baseline_url)
        for side in (usher, theirs):
            await side.posts(people, plan.scim_requests, keep=False)
            await side.gets(plan.scim_requests, keep=False)
        for index in range(plan.scim_rounds):
            for side in (usher, theirs) if alternated(index) else (theirs, usher):
                await side.posts(people, plan.scim_requests, keep=True)
        for index in range(plan.scim_rounds):
            for side in (usher, theirs) if alternated(index) else (theirs, usher):
                await side.gets(plan.scim_requests, keep=True)
    rows = [
        _scim_row(f"scim_post_c8{suffix}", usher, theirs, "POST", suffix),
        _scim_row(f"scim_get_c8{suffix}", usher, theirs, "GET", suffix),
    ]
    if not suffix:
        posts, their_posts = usher.latencies["POST"], theirs.latencies["POST"]
        rows.append(
            Row(
                "scim_post_p99_ms",
                percentile(posts, 99),
                percentile(their_posts, 99),
                Target("value", "<=", 50),
                "ms",
                percentile(posts, 50),
                percentile(posts, 95),
            )
        )
    return rows


def _scim_row(name: str, usher: ScimSide, theirs: ScimSide, method: str, suffix: str) -> Row:
    """Return a SCIM rate row: Usher's median rate over scim2-server's; latencies in ms."""
    latencies = usher.latencies[method]
    return Row(
        name,
        statistics.median(usher.rates[method]),
        statistics.median(theirs.rates[method]),
        None if suffix else Target("ratio", ">=", 1.0),
        "req/s",
        percentile(latencies, 50),
        percentile(latencies, 95),
    )


# The run


async def run_bench(plan: Plan, postgres_url: str | None = None) -> Report:
    """Run every row in a throw-away directory and return the report."""
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="usher-bench-") as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        processes = Processes(root / "logs")
        try:
            rows = await _run(root, processes, plan, postgres_url)
        finally:
            processes.stop_all()
    return Report(rows, plan, load_before, load_average())


async def _run(root: Path, processes: Processes, plan: Plan, postgres_url: str | None) -> list[Row]:
    """Start what the rows need, then measure them in order: jobs while the worker is
    idle, then SCIM while it drains the jobs the POSTs create."""
    flows = lifted_flows(root)
    people = People()
    baseline_port, baseline_token = free_port(), uuid.uuid4().hex
    baseline = processes.start(
        "scim2-server", ["cli.bench_scim2", str(baseline_port), baseline_token], usher_env()
    )
    baseline_url = f"http://127.0.0.1:{baseline_port}/v2"
    async with contextlib.AsyncExitStack() as resources:
        redis = EmbeddedRedis()
        resources.callback(redis.close)
        acme = resources.enter_context(AcmeServer(AcmeState(totp_period_s=BENCH_TOTP_PERIOD_S)))
        defaults = Settings(chromium_path=None, browser_args=[], headless=True, isolated_dns=True)
        setup = await bare_setup(defaults, acme, root / "bare-setup.json")
        bare = await BareSide.spawn(setup, acme, root / "logs" / "bare.log")
        resources.push_async_callback(bare.close)
        stack = await start_stack("sqlite", root, flows, redis.url, processes, acme)
        resources.callback(processes.stop_all)
        resources.push_async_callback(stack.db.dispose)
        await bare.ready()
        await wait_answering(
            f"{baseline_url}/ServiceProviderConfig", baseline, processes, "scim2-server"
        )
        client = await resources.enter_async_context(httpx.AsyncClient(timeout=JOB_WAIT_S))
        usher = UsherSide(stack, client)
        await usher.create(people.next("usher-warm-up"))
        await bare.sign_in(await kept_state(stack))
        await bare.create(people.next("bare-warm-up"))
        await usher.create(people.next("usher-warm-up"))
        job_row, bare_kib = await job_rows(usher, bare, people, plan)
        rows = [job_row, *await throughput_rows(usher, bare, people, plan)]
        rows.append(await evidence_row(stack, bare_kib))
        rows += await scim_rows(stack, baseline_url, baseline_token, people, plan, "")
        if postgres_url:
            rows += await _postgres_rows(
                root, flows, processes, baseline_url, baseline_token, people, plan, postgres_url
            )
    return _ordered(rows)


async def _postgres_rows(
    root: Path,
    flows: Path,
    processes: Processes,
    baseline_url: str,
    baseline_token: str,
    people: People,
    plan: Plan,
    postgres_url: str,
) -> list[Row]:
    """Run the SCIM rows again with Usher on a throw-away PostgreSQL database."""
    async with contextlib.AsyncExitStack() as resources:
        database_url = await resources.enter_async_context(throwaway_database(postgres_url))
        redis = EmbeddedRedis()
        resources.callback(redis.close)
        acme = resources.enter_context(AcmeServer(AcmeState(totp_period_s=BENCH_TOTP_PERIOD_S)))
        stack = await start_stack(
            "postgresql", root, flows, redis.url, processes, acme, database_url
        )
        resources.callback(processes.stop_all, "postgresql")
        resources.push_async_callback(stack.db.dispose)
        return await scim_rows(stack, baseline_url, baseline_token, people, plan, "_pg")


ROW_ORDER = (
    "scim_post_c8",
    "scim_get_c8",
    "scim_post_c8_pg",
    "scim_get_c8_pg",
    "scim_post_p99_ms",
    "job_create",
    "throughput",
    "pss_c2_mib",
    "evidence_kb_per_step",
)


def _ordered(rows: list[Row]) -> list[Row]:
    """Return the rows in the issue's order."""
    return sorted(rows, key=lambda row: ROW_ORDER.index(row.name))


def bench_main(*, quick: bool, as_json: bool, postgres_url: str | None) -> str:
    """Run the bench and return its report as text or JSON."""
    report = asyncio.run(run_bench(QUICK if quick else FULL, postgres_url))
    return json.dumps(report.as_json(), indent=2) if as_json else report.as_text()
