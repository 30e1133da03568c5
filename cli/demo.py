"""`usher demo`: Acme, `usher up`, an Okta SCIM create, the job printed, the account checked."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import select

from engine.apps.integrations import create_api_token, create_integration, set_secrets
from engine.jobs.state import FINAL as FINAL_STATES
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Job, JobStatus
from engine.storage.vault import Vault

JOB_WAIT_S = 120


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_usher(settings: Settings, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start `usher up` in its own process group, logging to a file."""
    env = {
        **os.environ,
        "USHER_DATA_DIR": str(settings.data_dir),
        "USHER_PORT": str(port),
        "USHER_ISOLATED_DNS": "true",
        "USHER_WORKER_POLL_DELAY_S": "0.05",
    }
    env.pop("USHER_REDIS_URL", None)
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "up"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process group politely, then firmly."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Wait until the API answers /healthz, or fail if its process died."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"usher up exited with {process.returncode}")
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("usher up did not answer within a minute")


async def find_job(db: Database, identity_id: str) -> Job | None:
    """Return the newest job of an identity."""
    async with db.session() as session:
        query = select(Job).where(Job.identity_id == identity_id).order_by(Job.created_at.desc())  # type: ignore[attr-defined]
        return (await session.exec(query)).first()


async def wait_job(db: Database, identity_id: str) -> Job | None:
    """Poll the database until the identity's job is final, printing progress."""
    deadline = time.monotonic() + JOB_WAIT_S
    last = None
    while time.monotonic() < deadline:
        job = await find_job(db, identity_id)
        if job is not None and job.status != last:
            print(f"  job {job.id}: {job.status} (attempt {job.attempt})", flush=True)
            last = job.status
        if job is not None and job.status in FINAL_STATES:
            return job
        await asyncio.sleep(0.3)
    return await find_job(db, identity_id)


def print_job(detail: dict[str, Any]) -> None:
    """Print each action and step with its duration and screenshot path."""
    print(f"\nJob {detail['id']}: {detail['status']}")
    for action in detail["actions"]:
        print(f"  action {action['name']}: {action['status']}")
        for step in action["steps"]:
            shots = [e["path"] for e in step["evidence"] if e["kind"] == "screenshot"]
            print(
                f"    {step['position']:>2}. {step['name']:<40} {step['status']:<8}"
                f" {step['duration_ms']:>5} ms  {shots[0] if shots else '-'}"
            )
            if step["error"]:
                print(f"        error: {step['error']}")


async def run_demo(settings: Settings) -> int:
    """Run the whole demo; return 0 only when the account really exists in Acme."""
    from fixtures.acme.server import AcmeServer
    from fixtures.acme.state import AcmeState
    from fixtures.idp import sample

    settings.ensure_data_dir()
    db = Database.from_settings(settings)
    await db.migrate()
    state = AcmeState()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    usher = start_usher(settings, port, settings.data_dir / "demo-usher.log")
    with AcmeServer(state) as acme:
        try:
            print(f"Acme fixture app at {acme.url}; usher up at {api}", flush=True)
            async with db.session() as session:
                integration, token = await create_integration(
                    session, settings, app="acme", base_url=acme.url, name="Acme (demo)"
                )
                vault = Vault.from_path(settings.vault_key_path)
                await set_secrets(session, settings, vault, integration.id, state.service_account())
                operator = await create_api_token(session, "demo")
            print(f"Integration {integration.id} for Acme created", flush=True)
            await wait_healthy(api, usher)
            body = sample("okta", "create_user")
            headers = {"Authorization": f"Bearer {token}", "User-Agent": "Okta SCIM Client 1.0.0"}
            async with httpx.AsyncClient(base_url=api, headers=headers) as client:
                started = time.monotonic()
                response = await client.post(
                    f"/scim/v2/{integration.id}/Users",
                    json=body,
                    headers={"Content-Type": "application/scim+json"},
                )
                elapsed_ms = (time.monotonic() - started) * 1000
                print(f"SCIM POST /Users -> {response.status_code} in {elapsed_ms:.0f} ms")
                if response.status_code != 201:
                    print(response.text)
                    return 1
                job = await wait_job(db, response.json()["id"])
                if job is None:
                    print("no job was created")
                    return 1
                detail = await client.get(
                    f"/api/jobs/{job.id}", headers={"Authorization": f"Bearer {operator}"}
                )
                print_job(detail.json())
            accounts = state.users_with_email(body["userName"])
            print(f"\nAcme now holds {len(accounts)} account(s) for {body['userName']}")
            for user in accounts:
                print(f"  {user.id} {user.email} {user.first_name} {user.last_name}")
            ok = job.status == JobStatus.succeeded and len(accounts) == 1
            print("Demo succeeded." if ok else "Demo FAILED.")
            return 0 if ok else 1
        finally:
            stop(usher)
            await db.dispose()
