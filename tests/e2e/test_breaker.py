"""A wrong service-account password: a couple of refused sign-ins, then the breaker holds.

The service account is protected: however many jobs are queued, Usher tries at most the
breaker's threshold of sign-ins, the jobs wait instead of failing, health turns broken, and
fixing the secret and resuming provisions everyone.
"""

import asyncio
import time

import httpx
from sqlmodel import select

from engine.apps.integrations import set_secret
from engine.storage.db import Database
from engine.storage.models import Integration, Job, JobStatus
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import scim_post, wait_job
from tests.harness import (
    Connected,
    Usher,
    start_process,
    stop_process,
)

PEOPLE = [f"locked{n}@example.com" for n in range(8)]
THRESHOLD = 2


async def statuses(db: Database, integration_id: str) -> list[str]:
    """Return the statuses of an integration's jobs."""
    async with db.session() as session:
        jobs = (await session.exec(select(Job).where(Job.integration_id == integration_id))).all()
    return [job.status for job in jobs]


async def wait_all_waiting(db: Database, integration_id: str, count: int) -> None:
    """Wait until every job of the integration waits for its breaker."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = await statuses(db, integration_id)
        if len(found) == count and all(s == JobStatus.waiting for s in found):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"jobs did not all wait: {found}")


async def test_a_wrong_password_opens_the_breaker_and_resume_provisions_everyone(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """At most THRESHOLD sign-ins for all the queued jobs; then resume and all are created."""
    vault = Vault.from_path(usher.settings.vault_key_path)
    async with usher_db.session() as session:
        await set_secret(session, usher.settings, vault, connected.id, "admin_password", "wrong")
    identities = []
    for email in PEOPLE:
        response = await scim_post(connected, okta_user(email, "Locked", "Out"))
        assert response.status_code == 201, response.text
        identities.append(response.json()["id"])

    await wait_all_waiting(usher_db, connected.id, len(PEOPLE))
    assert acme.state.password_attempts <= THRESHOLD
    assert acme.state.users_with_email(PEOPLE[0]) == []
    async with usher_db.session() as session:
        integration = await session.get(Integration, connected.id)
    assert integration is not None
    assert (integration.health, integration.breaker) == ("broken", "open")
    assert "refused the service account's username or password" in (integration.health_detail or "")

    async with usher_db.session() as session:
        await set_secret(
            session, usher.settings, vault, connected.id, "admin_password", acme.state.password
        )
    async with httpx.AsyncClient() as client:
        resumed = await client.post(
            f"{usher.api}/api/integrations/{connected.id}/resume",
            headers={"Authorization": f"Bearer {connected.operator}"},
        )
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["released_jobs"] == len(PEOPLE)

    for identity, email in zip(identities, PEOPLE, strict=True):
        job = await wait_job(usher_db, identity, timeout_s=120)
        assert job.status == JobStatus.succeeded, job.error
        assert len(acme.state.users_with_email(email)) == 1
    async with usher_db.session() as session:
        integration = await session.get(Integration, connected.id)
    assert integration is not None and integration.health == "healthy"
    assert acme.state.password_attempts <= THRESHOLD + 1, "one sign-in after the fix"


async def test_a_probe_closes_the_breaker_once_the_secret_is_fixed(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """No operator resume: after the cool-down, a real sign-in in a fresh context closes it."""
    env = usher.worker_env(breaker_cooldown_s="2", relay_every_s="0.5")
    with usher.own_worker_paused():
        worker = start_process("worker", env, usher.log_dir / "worker-probe.log")
        try:
            await probe_after_fix(usher, usher_db, acme, connected)
            log = (usher.log_dir / "worker-probe.log").read_text()
            assert "signed in: breaker closed" in log
            assert "Traceback" not in log
        finally:
            stop_process(worker)


async def probe_after_fix(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Open the breaker with a wrong password, fix it, and wait for the probe to close it."""
    vault = Vault.from_path(usher.settings.vault_key_path)
    async with usher_db.session() as session:
        await set_secret(session, usher.settings, vault, connected.id, "admin_password", "wrong")
    emails = ["probe1@example.com", "probe2@example.com", "probe3@example.com"]
    identities = []
    for email in emails:
        response = await scim_post(connected, okta_user(email, "Probe", "Me"))
        identities.append(response.json()["id"])
    await wait_all_waiting(usher_db, connected.id, len(emails))
    async with usher_db.session() as session:
        await set_secret(
            session, usher.settings, vault, connected.id, "admin_password", acme.state.password
        )
    for identity, email in zip(identities, emails, strict=True):
        job = await wait_job(usher_db, identity, timeout_s=90)
        assert job.status == JobStatus.succeeded, job.error
        assert len(acme.state.users_with_email(email)) == 1
    async with usher_db.session() as session:
        integration = await session.get(Integration, connected.id)
    assert integration is not None
    assert (integration.breaker, integration.health) == ("closed", "healthy")
