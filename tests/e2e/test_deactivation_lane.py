"""Access removal goes first: deactivations run on reserved slots, not behind the creates."""

import time

import httpx
from sqlmodel import select

from engine.storage.db import Database
from engine.storage.models import Job, JobStatus, Lane
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user, sample
from tests.e2e.test_okta_create import scim_post, wait_job
from tests.harness import (
    Connected,
    Usher,
    start_process,
    stop_process,
)

SCIM_TIMEOUT_S = 30.0
"""A loaded machine can keep one SCIM answer waiting on SQLite's write lock for seconds."""
LEAVERS = [f"leaver{n}@example.com" for n in range(3)]
BACKLOG = [f"joiner{n}@example.com" for n in range(6)]


async def deactivate(connected: Connected, user_id: str) -> None:
    """Send Okta's deactivation PATCH."""
    async with httpx.AsyncClient(timeout=SCIM_TIMEOUT_S) as client:
        response = await client.patch(
            f"{connected.scim_url}/Users/{user_id}",
            json=sample("okta", "deactivate"),
            headers={"Authorization": f"Bearer {connected.token}"},
        )
    assert response.status_code in (200, 204), response.text


async def finished_creates(db: Database, identities: list[str]) -> int:
    """Count the backlog's jobs that have finished."""
    async with db.session() as session:
        jobs = (await session.exec(select(Job).where(Job.identity_id.in_(identities)))).all()  # type: ignore[attr-defined]
    return sum(job.status == JobStatus.succeeded for job in jobs)


async def test_deactivations_overtake_a_backlog_of_creates(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """With one normal slot busy for minutes of creates, leavers lose access within seconds."""
    leavers = []
    for email in LEAVERS:
        response = await scim_post(connected, okta_user(email, "Leaving", "Soon"))
        leavers.append(response.json()["id"])
    for identity in leavers:
        assert (await wait_job(usher_db, identity)).status == JobStatus.succeeded

    env = usher.worker_env(worker_max_jobs="1", worker_urgent_slots="1")
    with usher.own_worker_paused():
        worker = start_process("worker", env, usher.log_dir / "worker-lanes.log")
        try:
            acme.state.slow_ms = 150
            joiners = []
            for email in BACKLOG:
                response = await scim_post(connected, okta_user(email, "Joining", "Now"))
                joiners.append(response.json()["id"])
            for identity in leavers:
                await deactivate(connected, identity)
            started = time.monotonic()
            for identity in leavers:
                job = await wait_job(usher_db, identity, timeout_s=180)
                assert job.status == JobStatus.succeeded, job.error
                assert job.lane == Lane.urgent
            took = time.monotonic() - started
            done = await finished_creates(usher_db, joiners)
            assert done < len(BACKLOG), f"all {done} creates went first; leavers took {took:.1f}s"
            for email in LEAVERS:
                assert [u.active for u in acme.state.users_with_email(email)] == [False]
            acme.state.slow_ms = 0
            for identity in joiners:
                assert (await wait_job(usher_db, identity, timeout_s=300)).status == "succeeded"
            assert all(len(acme.state.users_with_email(e)) == 1 for e in BACKLOG)
        finally:
            acme.state.slow_ms = 0
            stop_process(worker)
