"""The job state machine on SQLite and PostgreSQL: claims, leases, single flight, operators."""

import asyncio

import pytest

from engine.jobs import state
from engine.storage.db import Database
from engine.storage.models import Identity, JobStatus, new_id
from tests.jobs.support import LEASE_S, lapse, new_identity, pending_job, reload, running_job


def test_every_state_has_its_moves_and_final_states_stay_closed() -> None:
    """The table names every state; nothing leaves success or supersession."""
    assert set(state.TRANSITIONS) == set(JobStatus)
    assert state.PENDING | state.FINAL | {JobStatus.running} == set(JobStatus)
    assert not state.TRANSITIONS[JobStatus.succeeded]
    assert not state.TRANSITIONS[JobStatus.superseded]
    assert state.can_move(JobStatus.queued, JobStatus.running)
    assert not state.can_move(JobStatus.succeeded, JobStatus.queued)
    assert not state.can_move(JobStatus.failed, JobStatus.running)


def test_backoff_is_bounded_and_jittered() -> None:
    """Every delay stays within the last step plus jitter, however many attempts."""
    delays = [state.backoff_s(attempt) for attempt in range(1, 50)]
    assert max(delays) <= 120 * 1.2
    assert min(delays) >= 5 * 0.8
    assert len({round(d, 3) for d in delays}) > 1


async def test_an_attempt_is_claimed_once(database: Database) -> None:
    """Two workers given the same delivery: one runs it, the other finds it stale."""
    identity = await new_identity(database)
    job = await pending_job(database, identity)
    first, second = await asyncio.gather(
        state.claim(database, job.id, 1, "w1", lease_s=LEASE_S),
        state.claim(database, job.id, 1, "w2", lease_s=LEASE_S),
    )
    assert [c.lease is not None for c in (first, second)].count(True) == 1
    stale = await state.claim(database, job.id, 2, "w3", lease_s=LEASE_S)
    assert stale.lease is None and not stale.busy


async def test_a_second_job_waits_for_the_running_one_and_is_released_by_it(
    database: Database,
) -> None:
    """Single flight by index: the newer job is held, not spun, and freed when the first ends."""
    identity = await new_identity(database)
    first = await running_job(database, identity)
    newer = await pending_job(database, identity)
    assert newer.id != first.job.id

    busy = await state.claim(database, newer.id, 1, "w2", lease_s=LEASE_S)
    assert busy.busy and busy.lease is None
    held = await reload(database, newer.id)
    assert held.status == JobStatus.queued
    assert held.not_before is not None and held.not_before <= first.job.lease_until
    assert (await state.claim(database, newer.id, 1, "w2", lease_s=LEASE_S)).lease is None

    assert await state.finish(database, first.lease, JobStatus.succeeded, None) == "succeeded"
    released = await state.release_next(database, first.job)
    assert [job.id for job in released] == [newer.id]
    assert (await state.claim(database, newer.id, 1, "w2", lease_s=LEASE_S)).lease is not None


async def test_a_reclaimed_attempt_cannot_be_renewed_or_finished_by_its_old_worker(
    database: Database,
) -> None:
    """Compare-and-set on (job, attempt, worker): the stalled worker's writes are refused."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    await lapse(database, claimed.job.id)

    assert await state.reclaim(database, claimed.job.id, max_attempts=3) == JobStatus.retrying
    assert not await state.renew(database, claimed.lease, lease_s=LEASE_S)
    assert not await state.owns(database, claimed.lease)
    assert await state.finish(database, claimed.lease, JobStatus.succeeded, None) == "retrying"
    job = await reload(database, claimed.job.id)
    assert (job.status, job.attempt, job.finished_at) == (JobStatus.retrying, 2, None)

    again = await state.claim(database, job.id, 2, "w2", lease_s=LEASE_S)
    assert again.lease is not None
    assert await state.finish(database, again.lease, JobStatus.succeeded, None) == "succeeded"


async def test_a_renewed_lease_is_not_reclaimed(database: Database) -> None:
    """The relay leaves alone a job whose worker is alive."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    assert await state.renew(database, claimed.lease, lease_s=LEASE_S)
    assert await state.reclaim(database, claimed.job.id, max_attempts=3) is None
    assert (await reload(database, claimed.job.id)).status == JobStatus.running


async def test_the_last_attempt_of_a_lapsed_job_fails(database: Database) -> None:
    """Reclaiming stops at the attempt bound: the job fails, saying why."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    await lapse(database, claimed.job.id)
    assert await state.reclaim(database, claimed.job.id, max_attempts=1) == JobStatus.failed
    job = await reload(database, claimed.job.id)
    assert "stopped renewing its lease" in (job.error or "")


async def test_retries_stop_at_the_attempt_bound(database: Database) -> None:
    """A transient fault retries until the last attempt, then the job fails."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    statuses = []
    lease = claimed.lease
    for attempt in range(1, 4):
        statuses.append(await state.retry_later(database, lease, "500", max_attempts=3, delay_s=0))
        if statuses[-1] != JobStatus.retrying:
            break
        again = await state.claim(database, claimed.job.id, attempt + 1, "w1", lease_s=LEASE_S)
        assert again.lease is not None
        lease = again.lease
    assert statuses == [JobStatus.retrying, JobStatus.retrying, JobStatus.failed]


async def test_a_failing_job_is_superseded_by_a_newer_pending_one(database: Database) -> None:
    """A transient fault with a newer change queued: the newer job reconciles instead."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    newer = await pending_job(database, identity)
    status = await state.retry_later(database, claimed.lease, "500", max_attempts=3)
    assert status == JobStatus.superseded
    job = await reload(database, claimed.job.id)
    assert job.superseded_by == newer.id


async def test_cancel_stops_a_running_job_and_its_worker_cannot_close_it(
    database: Database,
) -> None:
    """An operator's cancel wins over the worker's later success."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    assert (await state.cancel(database, claimed.job.id)).status == JobStatus.cancelled
    assert not await state.owns(database, claimed.lease)
    assert await state.finish(database, claimed.lease, JobStatus.succeeded, None) == "cancelled"
    with pytest.raises(state.JobStateError, match="only a live job"):
        await state.cancel(database, claimed.job.id)


async def test_an_operator_retries_a_closed_job(database: Database) -> None:
    """Retry queues the next attempt now; with a change already pending, that job is it."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    await state.finish(database, claimed.lease, JobStatus.failed, "boom")
    retried = await state.retry(database, claimed.job.id)
    assert (retried.status, retried.attempt, retried.error) == (JobStatus.queued, 2, None)
    with pytest.raises(state.JobStateError, match="only a closed job"):
        await state.retry(database, claimed.job.id)

    other = await new_identity(database)
    closed = await running_job(database, other)
    await state.finish(database, closed.lease, JobStatus.failed, "boom")
    newer = await pending_job(database, other)
    assert (await state.retry(database, closed.job.id)).id == newer.id


async def test_a_change_supersedes_a_blocked_job(database: Database) -> None:
    """A parked identity comes back when its SCIM resource changes."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity)
    await state.finish(database, claimed.lease, JobStatus.blocked, "validation message")
    newer = await pending_job(database, identity)
    parked = await reload(database, claimed.job.id)
    assert (parked.status, parked.superseded_by) == (JobStatus.superseded, newer.id)


async def test_ten_changes_are_one_pending_job(database: Database) -> None:
    """Concurrent changes of one identity share its pending job."""
    identity = await new_identity(database)
    jobs = await asyncio.gather(*(pending_job(database, identity) for _ in range(10)))
    assert len({job.id for job in jobs}) == 1


async def test_a_freed_slot_releases_the_held_leaver_before_older_creates(
    database: Database,
) -> None:
    """Held behind a full gate, a deactivation is released before creates held longer."""
    first = await new_identity(database)
    create = await pending_job(database, first)
    async with database.session() as session:
        leaver = Identity(
            integration_id=first.integration_id,
            user_name=f"{new_id()}@example.com",
            user_name_key=new_id(),
            resource={},
            active=False,
        )
        session.add(leaver)
        await session.commit()
        urgent = await state.ensure_pending(
            session, first.integration_id, identity_id=leaver.id, lane=state.lane_of(leaver)
        )
        await session.commit()
    for job in (create, urgent):
        await state.hold(database, job.id, job.attempt, seconds=60)
    released = await state.release_held(database, first.integration_id)
    assert [job.id for job in released] == [urgent.id]
    assert (await reload(database, create.id)).not_before is not None, "the create still waits"
