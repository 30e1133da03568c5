"""Health that means something: `/livez`, `/readyz` and `usher status` over real processes."""

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
from typer.testing import CliRunner

from cli.main import app
from engine.jobs.health import check_readiness
from engine.storage.db import Database
from fixtures.idp import okta_user
from tests.harness import (
    ROOT,
    free_port,
    start_process,
    start_redis_server,
    stop_process,
    usher_env,
    wait_for,
    wait_healthy,
)

SCIM = "application/scim+json"


def test_version_comes_from_the_package_metadata() -> None:
    """`usher --version` prints the installed distribution's version and exits 0."""
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"usher {version('usher')}"


async def test_a_database_that_does_not_answer_fails_its_check() -> None:
    """Readiness names the database when it cannot be reached, and is not ready."""
    db = Database("postgresql+asyncpg://usher@127.0.0.1:1/usher")
    try:
        readiness = await check_readiness(db, None, no_redis="none given")
    finally:
        await db.dispose()
    assert not readiness.ready
    assert readiness.failed == ["database", "redis", "workers"]
    assert readiness.checks["redis"].detail == "none given"


def ready(api: str) -> tuple[int, dict]:
    """Return /readyz's status code and body."""
    response = httpx.get(f"{api}/readyz", timeout=10)
    return response.status_code, response.json()


def usher(*args: str, env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess:
    """Run one `usher` command as an operator would."""
    command = [sys.executable, "-m", "cli", *args]
    return subprocess.run(command, env=env, capture_output=True, cwd=ROOT, timeout=60, check=check)


def status(env: dict[str, str]) -> tuple[int, dict]:
    """Run `usher status --json`; return its exit code and report."""
    done = usher("status", "--json", env=env)
    return done.returncode, json.loads(done.stdout)


def queue_one_job(api: str, env: dict[str, str]) -> str:
    """Create an integration and a user over SCIM with no worker running; return its id."""
    created = usher(
        "integrations",
        "create",
        "--app",
        "acme",
        "--base-url",
        "http://127.0.0.1:9",
        "--json",
        env=env,
        check=True,
    )
    integration = json.loads(created.stdout)
    scim = httpx.post(
        f"{api}/scim/v2/{integration['id']}/Users",
        json=okta_user("queued@example.com"),
        headers={"Authorization": f"Bearer {integration['token']}", "Content-Type": SCIM},
        timeout=30,
    )
    assert scim.status_code == 201, scim.text
    return integration["id"]


def test_readiness_follows_the_database_redis_and_the_workers(tmp_path: Path) -> None:
    """`serve --host --port` binds where told; /readyz and `usher status` are ready only with
    a live worker, name Redis while it is away and recover with it, and drop as soon as the
    last worker stops; `usher status` reads the queue from the database."""
    redis_port, port = free_port(), free_port()
    env = usher_env(tmp_path / "data", f"redis://127.0.0.1:{redis_port}/0", free_port())
    api = f"http://127.0.0.1:{port}"  # not USHER_PORT: the flags win
    processes = [start_redis_server(redis_port)]
    try:
        serve_log = tmp_path / "serve.log"
        serve = start_process("serve", env, serve_log, "--host", "127.0.0.1", "--port", str(port))
        processes.append(serve)
        wait_healthy(api, serve, serve_log)
        live = httpx.get(f"{api}/livez", timeout=10)
        assert (live.status_code, live.json()) == (
            200,
            {"status": "ok", "version": version("usher")},
        )
        code, body = ready(api)
        assert (code, body["failed"]) == (503, ["workers"]), body
        assert body["checks"]["database"] == body["checks"]["redis"] == {"ok": True}

        integration = queue_one_job(api, env)
        exit_code, report = status(env)
        assert exit_code == 1 and report["readiness"]["failed"] == ["workers"], report
        assert "no worker heartbeat" in report["readiness"]["checks"]["workers"]["detail"]
        lanes = {lane["lane"]: lane for lane in report["queue"]["lanes"]}
        assert (lanes["normal"]["queued"], lanes["urgent"]["queued"]) == (1, 0), lanes
        assert report["queue"]["oldest_queued"]["integration_id"] == integration

        worker = start_process("worker", env, tmp_path / "worker.log")
        processes.append(worker)
        wait_for(lambda: ready(api)[0] == 200, 60, "a worker's heartbeat")
        exit_code, report = status(env)
        assert exit_code == 0 and report["readiness"]["ready"], report
        assert report["readiness"]["checks"]["workers"]["detail"].startswith("1 alive")

        stop_process(processes[0])
        code, body = ready(api)
        assert (code, body["failed"]) == (503, ["redis", "workers"]), body
        assert httpx.get(f"{api}/livez", timeout=10).status_code == 200
        processes[0] = start_redis_server(redis_port)  # empty: the heartbeat must come back
        wait_for(lambda: ready(api)[0] == 200, 60, "the heartbeat once Redis is back")
        assert worker.poll() is None and serve.poll() is None

        stop_process(worker)
        code, body = ready(api)
        assert (code, body["failed"]) == (503, ["workers"]), body
    finally:
        for process in reversed(processes):
            stop_process(process)
