"""Helpers the tests share: running Usher's processes and connecting Acme and Globex."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis

from engine.apps.integrations import create_api_token, create_integration, set_secrets
from engine.automation.runner import Artifact, StepResult
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.globex.server import GlobexServer

ROOT = Path(__file__).resolve().parent.parent


SERVE_START_S = 60
"""How long `usher serve` may take to answer: seconds alone, much longer on a loaded machine."""


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def other_redis_db(redis_url: str, db: int) -> str:
    """Return the URL of another database on the same Redis server, away from the workers'."""
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    """Poll a predicate until it holds, or fail naming what never happened."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass
class Usher:
    """A running Usher: `serve` and `worker` processes over one data dir and Redis."""

    api: str
    settings: Settings
    redis_url: str
    serve: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    log_dir: Path
    database_url: str

    def logs(self) -> str:
        """Return everything both processes logged so far."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def worker_env(self, **settings: str) -> dict[str, str]:
        """Return the environment of an extra worker on this Usher, with settings on top.

        `job_lease_s="2"` becomes `USHER_JOB_LEASE_S=2`.
        """
        env = usher_env(self.settings.data_dir, self.redis_url, free_port())
        env["USHER_DATABASE_URL"] = self.database_url
        env.update({f"USHER_{name.upper()}": value for name, value in settings.items()})
        return env

    @contextlib.contextmanager
    def own_worker_paused(self) -> Iterator[None]:
        """Pause the session's worker, so that only the workers a test starts take jobs."""
        os.kill(self.worker.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.worker.pid, signal.SIGCONT)


def usher_env(data_dir: Path, redis_url: str, port: int) -> dict[str, str]:
    """Return the environment a test Usher process runs with."""
    return {
        **os.environ,
        "USHER_DATA_DIR": str(data_dir),
        "USHER_REDIS_URL": redis_url,
        "USHER_PORT": str(port),
        "USHER_ISOLATED_DNS": "true",
        "USHER_WORKER_POLL_DELAY_S": "0.05",
        "USHER_STEP_TIMEOUT_MS": "4000",
        "USHER_FLOWS_DIR": str(ROOT / "flows"),
    }


def up_env(data_dir: Path, port: int) -> dict[str, str]:
    """Return the environment of an `usher up` over its embedded Redis (no USHER_REDIS_URL)."""
    env = usher_env(data_dir, "", port)
    del env["USHER_REDIS_URL"]
    return env


def start_process(
    command: str, env: dict[str, str], log: Path, *args: str
) -> subprocess.Popen[bytes]:
    """Start `usher COMMAND [ARGS]` with its output in a log file."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", command, *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def start_redis_server(port: int) -> subprocess.Popen[bytes]:
    """Start a private, memory-only redis-server on 127.0.0.1 and wait until it answers."""
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(answers, 10, f"redis-server on port {port}")
    client.close()
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a process by its id: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(api: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the API answers, failing with its log if it died."""

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"usher serve exited:\n{log.read_text()}")
        try:
            return httpx.get(f"{api}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, SERVE_START_S, "usher serve")


@dataclass
class Connected:
    """An integration of Acme with its SCIM token, and an operator token."""

    id: str
    token: str
    operator: str
    scim_url: str


async def connect_acme(
    usher: Usher,
    db: Database,
    acme: AcmeServer,
    *,
    path: str = "",
    import_accounts: bool = False,
    secrets: bool = True,
) -> Connected:
    """Create an Acme integration with the service account's secrets, at a path if given."""
    return await connect_acme_at(
        usher.api,
        usher.settings,
        db,
        acme,
        path=path,
        import_accounts=import_accounts,
        secrets=secrets,
    )


async def connect_acme_at(
    api: str,
    settings: Settings,
    db: Database,
    acme: AcmeServer,
    *,
    path: str = "",
    import_accounts: bool = False,
    secrets: bool = True,
) -> Connected:
    """Create an Acme integration on the Usher serving `api` over `settings`' data dir.

    It skips the onboarding import unless asked (`import_accounts`): the tests' Acme holds
    only its three seed users, and the tests that meet them prove what a create does when
    it finds an account already there (the path a skipped import leaves); the import and
    its waiting jobs are proven in tests/e2e/test_drift.py. Without `secrets` the service
    account is left unset, as an IT admin who has not typed it yet.
    """
    service_account = acme.state.service_account() if secrets else None
    return await connect_app_at(
        api, settings, db, "acme", acme.url + path, service_account, import_accounts
    )


async def connect_globex(usher: Usher, db: Database, globex: GlobexServer) -> Connected:
    """Create a Globex integration with the service account's secrets.

    Like connect_acme, it skips the onboarding import: the tests meet Globex's seed
    members only where they mean to.
    """
    return await connect_app_at(
        usher.api, usher.settings, db, "globex", globex.url, globex.state.service_account(), False
    )


async def connect_app_at(
    api: str,
    settings: Settings,
    db: Database,
    app: str,
    base_url: str,
    service_account: dict[str, str] | None,
    import_accounts: bool,
) -> Connected:
    """Create an integration of an app at a base URL, with its service account if given."""
    async with db.session() as session:
        integration, token = await create_integration(
            session, settings, app=app, base_url=base_url, import_accounts=import_accounts
        )
        if service_account is not None:
            vault = Vault.from_path(settings.vault_key_path)
            await set_secrets(session, settings, vault, integration.id, service_account)
        operator = await create_api_token(session, "tests")
    scim_url = f"{api}/scim/v2/{integration.id}"
    return Connected(integration.id, token, operator, scim_url)


class RecordingSink:
    """Keep every step the runner records, and check each came with its screenshot."""

    def __init__(self) -> None:
        self.results: list[StepResult] = []

    async def record(self, result: StepResult, artifacts: list[Artifact]) -> None:
        """Keep the step's result."""
        assert artifacts[0].kind == "screenshot"
        self.results.append(result)
