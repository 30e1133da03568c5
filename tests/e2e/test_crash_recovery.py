"""Nothing is lost when a worker dies mid-job: the relay reclaims it and another finishes."""

import asyncio
import time

from sqlmodel import select

from engine.storage.db import Database
from engine.storage.models import Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import scim_post, wait_job
from tests.harness import (
    Connected,
    Usher,
    start_process,
    stop_process,
)


async def wait_running(db: Database, identity_id: str, timeout_s: float = 30) -> Job:
    """Wait until the identity's job is running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with db.session() as session:
            job = (await session.exec(select(Job).where(Job.identity_id == identity_id))).first()
        if job is not None and job.status == JobStatus.running:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the job never started")


async def test_a_job_whose_worker_is_killed_is_reclaimed(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """SIGKILL the worker mid-job; once the lease lapses a new worker's relay finishes it.

    The rescuer starts at once: nothing waits out the lease but its relay.
    """
    env = usher.worker_env(job_lease_s="2")
    with usher.own_worker_paused():
        doomed = start_process("worker", env, usher.log_dir / "worker-doomed.log")
        rescuer = None
        try:
            acme.state.slow_ms = 800
            body = okta_user("nia.crash@example.com", "Nia", "Crash")
            response = await scim_post(connected, body)
            assert response.status_code == 201, response.text
            identity = response.json()["id"]
            running = await wait_running(usher_db, identity)
            doomed.kill()
            doomed.wait()
            acme.state.slow_ms = 0
            rescuer = start_process("worker", env, usher.log_dir / "worker-rescuer.log")
            job = await wait_job(usher_db, identity, timeout_s=60)
            assert job.id == running.id
            assert job.status == JobStatus.succeeded, job.error
            assert job.attempt == 2
            assert len(acme.state.users_with_email("nia.crash@example.com")) == 1
        finally:
            acme.state.slow_ms = 0
            stop_process(doomed)
            if rescuer is not None:
                stop_process(rescuer)
