"""It comes back: failed identities return after a growing back-off; the sweep finds the rest."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from engine.jobs import state
from engine.jobs.queue import JobQueue
from engine.jobs.sweep import sweep
from engine.storage.db import Database
from engine.storage.models import AppAccount, Identity, Job, JobStatus, utcnow
from tests.harness import other_redis_db
from tests.jobs.support import JOBS_REDIS_DB, new_identity, reload, running_job

BASE_S = 60.0
CAP_S = 600.0


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[JobQueue]:
    """Return a job queue on the suite's private Redis."""
    queue = await JobQueue.connect(other_redis_db(redis_url, JOBS_REDIS_DB))
    yield queue
    await queue.close()


async def fail_job(database: Database, identity: Identity) -> Job:
    """Run a job of the identity to a failed end."""
    claimed = await running_job(database, identity)
    await state.finish(database, claimed.lease, JobStatus.failed, "the app answered 500")
    return await reload(database, claimed.job.id)


async def age(database: Database, job_id: str, seconds: float) -> None:
    """Move a job's end into the past, as if time had passed."""
    async with database.session() as session:
        when = utcnow() - timedelta(seconds=seconds)
        await session.exec(update(Job).where(Job.id == job_id).values(finished_at=when))
        await session.commit()


async def reconciled(database: Database, identity: Identity) -> None:
    """Record that the identity's account matches its newest generation."""
    async with database.session() as session:
        session.add(
            AppAccount(
                integration_id=identity.integration_id,
                identity_id=identity.id,
                reconciled_generation=identity.generation,
            )
        )
        await session.commit()


async def sweep_of(database: Database, queue: JobQueue, identity: Identity) -> int:
    """Run the sweep over one identity's integration."""
    return await sweep(
        database,
        queue,
        base_s=BASE_S,
        cap_s=CAP_S,
        limit=100,
        integration_id=identity.integration_id,
    )


def test_the_wait_doubles_per_failure_and_is_capped() -> None:
    """1st failure: about the base; then double each time; never above the cap."""
    waits = [state.comeback_s(n, base_s=BASE_S, cap_s=CAP_S, seed="j") for n in range(1, 10)]
    assert BASE_S * 0.8 <= waits[0] <= BASE_S * 1.2
    assert waits[1] > waits[0] and waits[2] > waits[1]
    assert max(waits) == pytest.approx(CAP_S) or max(waits) <= CAP_S
    assert state.comeback_s(3, base_s=BASE_S, cap_s=CAP_S, seed="j") == waits[2]


async def test_a_failed_identity_is_queued_again_after_its_back_off(database: Database) -> None:
    """The next job is pending at once, due after the back-off, kept in the database."""
    identity = await new_identity(database)
    failed = await fail_job(database, identity)
    pending = await state.come_back_later(database, failed, base_s=BASE_S, cap_s=CAP_S)
    assert pending is not None and pending.status == JobStatus.queued
    assert pending.not_before is not None
    wait = (pending.not_before - utcnow()).total_seconds()
    assert BASE_S * 0.75 <= wait <= BASE_S * 1.25
    claim = await state.claim(database, pending.id, 1, "w", lease_s=30)
    assert claim.lease is None, "not delivered before its time"


async def test_a_change_already_pending_is_not_delayed(database: Database) -> None:
    """A SCIM change that came in meanwhile goes at once."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    async with database.session() as session:
        newer = await state.ensure_pending(
            session, identity.integration_id, identity_id=identity.id
        )
        await session.commit()
    await state.finish(database, claimed.lease, JobStatus.failed, "boom")
    failed = await reload(database, claimed.job.id)
    pending = await state.come_back_later(database, failed, base_s=BASE_S, cap_s=CAP_S)
    assert pending is not None and (pending.id, pending.not_before) == (newer.id, None)


async def test_the_sweep_queues_what_was_left_behind_and_only_that(
    database: Database, queue: JobQueue
) -> None:
    """Behind and idle: queued. Parked, cancelled, reconciled or still waiting: left alone."""
    lost = await new_identity(database)
    assert await sweep_of(database, queue, lost) == 1
    assert await sweep_of(database, queue, lost) == 0, "now it has a live job"

    done = await new_identity(database)
    await reconciled(database, done)
    assert await sweep_of(database, queue, done) == 0

    parked = await new_identity(database)
    claimed = await running_job(database, parked)
    await state.finish(database, claimed.lease, JobStatus.blocked, "validation")
    assert await sweep_of(database, queue, parked) == 0

    stopped = await new_identity(database)
    claimed = await running_job(database, stopped)
    await state.cancel(database, claimed.job.id)
    assert await sweep_of(database, queue, stopped) == 0

    failing = await new_identity(database)
    failed = await fail_job(database, failing)
    assert await sweep_of(database, queue, failing) == 0, "its back-off has not passed"
    await age(database, failed.id, BASE_S * 1.5)
    assert await sweep_of(database, queue, failing) == 1
