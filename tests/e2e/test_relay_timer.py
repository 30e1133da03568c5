"""The relay runs on its own timer: a dead worker's job comes back while every slot is busy."""

import asyncio
import time

from sqlmodel import select

from engine.storage.db import Database
from engine.storage.models import Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import scim_post, wait_job
from tests.harness import Connected, Usher, start_process, stop_process

LEASE_S = 2
RELAY_EVERY_S = 1


async def job_of(db: Database, identity_id: str) -> Job | None:
    """Return the identity's newest job."""
    async with db.session() as session:
        jobs = (await session.exec(select(Job).where(Job.identity_id == identity_id))).all()
    return max(jobs, key=lambda j: j.created_at) if jobs else None


async def wait_status(db: Database, identity_id: str, status: str, timeout_s: float = 30) -> Job:
    """Wait until the identity's job has a status."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = await job_of(db, identity_id)
        if job is not None and job.status == status:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job of {identity_id} never became {status}")


async def test_a_dead_workers_job_is_reclaimed_within_lease_and_one_relay_period(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Kill a worker mid-job; the survivor's only slot is busy, yet its relay reclaims on time."""
    env = usher.worker_env(
        job_lease_s=str(LEASE_S), relay_every_s=str(RELAY_EVERY_S), worker_max_jobs="1"
    )
    with usher.own_worker_paused():
        doomed = start_process("worker", env, usher.log_dir / "worker-timer-doomed.log")
        survivor = None
        try:
            acme.state.slow_ms = 700
            lost = await scim_post(connected, okta_user("ola.lost@example.com", "Ola", "Lost"))
            lost_id = lost.json()["id"]
            await wait_status(usher_db, lost_id, JobStatus.running)
            doomed.kill()
            doomed.wait()
            killed_at = time.monotonic()

            survivor = start_process("worker", env, usher.log_dir / "worker-timer-survivor.log")
            busy = await scim_post(connected, okta_user("bea.busy@example.com", "Bea", "Busy"))
            busy_id = busy.json()["id"]
            await wait_status(usher_db, busy_id, JobStatus.running)
            # From here a live worker runs the relay; the lease lapses LEASE_S after the kill.
            due = max(killed_at + LEASE_S, time.monotonic())

            back = await wait_status(usher_db, lost_id, JobStatus.retrying, timeout_s=20)
            waited = time.monotonic() - due
            busy_job = await job_of(usher_db, busy_id)
            assert busy_job is not None and busy_job.status == JobStatus.running, "slot busy"
            assert back.attempt == 2
            assert waited < RELAY_EVERY_S + 2.5, f"reclaimed {waited:.1f}s after it was due"

            acme.state.slow_ms = 0
            people = ((lost_id, "ola.lost@example.com"), (busy_id, "bea.busy@example.com"))
            for identity, email in people:
                job = await wait_job(usher_db, identity, timeout_s=90)
                assert job.status == JobStatus.succeeded, job.error
                assert len(acme.state.users_with_email(email)) == 1
        finally:
            acme.state.slow_ms = 0
            stop_process(doomed)
            if survivor is not None:
                stop_process(survivor)
