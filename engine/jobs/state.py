"""The one state machine of a Job: every transition, for the outbox, workers, relay, operators.

Workers write only by compare-and-set on (job, attempt, worker, running): once the relay has
reclaimed an attempt, its old worker can neither renew nor finish it. The database guards
single flight with partial unique indexes: at most one pending job (queued, retrying,
waiting) and at most one running job per identity and per group.
"""

import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import (
    AUDIT_SYSTEM_ACTOR,
    BUSY_WAIT_MAX_S,
    DELIVERY_SLACK_S,
    RETRY_BACKOFF_S,
    RETRY_JITTER,
)
from engine.jobs import alerts
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import (
    Identity,
    Job,
    JobKind,
    JobStatus,
    Lane,
    inventories_of,
    utcnow,
)

log = logging.getLogger(__name__)

PENDING: frozenset[str] = frozenset({JobStatus.queued, JobStatus.retrying, JobStatus.waiting})
"""Not started yet; one per identity and group, so ten changes are one job."""
DELIVERABLE: frozenset[str] = frozenset({JobStatus.queued, JobStatus.retrying})
"""Pending states a worker may claim once `not_before` has passed."""
LIVE: frozenset[str] = PENDING | {JobStatus.running}
FINAL: frozenset[str] = frozenset(
    {
        JobStatus.succeeded,
        JobStatus.failed,
        JobStatus.blocked,
        JobStatus.action_required,
        JobStatus.cancelled,
        JobStatus.superseded,
    }
)
OUTCOMES: frozenset[str] = frozenset(
    {JobStatus.succeeded, JobStatus.failed, JobStatus.blocked, JobStatus.action_required}
)
"""How a worker may close a running attempt itself."""
RETRYABLE: frozenset[str] = frozenset(
    {JobStatus.failed, JobStatus.blocked, JobStatus.action_required, JobStatus.cancelled}
)
"""States an operator may retry."""

TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.queued: frozenset(
        {JobStatus.running, JobStatus.waiting, JobStatus.cancelled, JobStatus.superseded}
    ),
    JobStatus.retrying: frozenset(
        {JobStatus.running, JobStatus.waiting, JobStatus.cancelled, JobStatus.superseded}
    ),
    JobStatus.waiting: frozenset({JobStatus.queued, JobStatus.cancelled, JobStatus.superseded}),
    JobStatus.running: OUTCOMES
    | {JobStatus.retrying, JobStatus.waiting, JobStatus.cancelled, JobStatus.superseded},
    JobStatus.failed: frozenset({JobStatus.queued, JobStatus.superseded}),
    JobStatus.blocked: frozenset({JobStatus.queued, JobStatus.superseded}),
    JobStatus.action_required: frozenset({JobStatus.queued, JobStatus.superseded}),
    JobStatus.cancelled: frozenset({JobStatus.queued}),
    JobStatus.succeeded: frozenset(),
    JobStatus.superseded: frozenset(),
}
"""Every move a job may make; `can_move` is the one check, and the tests walk this table."""


class JobStateError(Exception):
    """An operator asked for a move the job's state does not allow."""


class JobNotFound(JobStateError):
    """An operator named a job that does not exist."""


def can_move(source: str, target: str) -> bool:
    """Tell whether a job may go from one state to another."""
    return target in TRANSITIONS.get(source, frozenset())


@dataclass(frozen=True)
class Lease:
    """One worker's hold on one attempt of a running job: the key of every CAS write."""

    job_id: str
    attempt: int
    worker: str


def _audit(
    session: AsyncSession,
    job_id: str,
    status: str,
    *,
    actor: str = AUDIT_SYSTEM_ACTOR,
    integration_id: str | None = None,
    **detail: object,
) -> None:
    """Record a job's move in the audit chain, in the transaction that makes it."""
    audit.record(
        session,
        actor=actor,
        event_name=f"job.{status}",
        integration_id=integration_id,
        job_id=job_id,
        target=job_id,
        detail={key: value for key, value in detail.items() if value is not None},
    )


def backoff_s(attempt: int) -> float:
    """Return the jittered delay before a job's next attempt, capped by the last step."""
    base = RETRY_BACKOFF_S[min(max(attempt - 1, 0), len(RETRY_BACKOFF_S) - 1)]
    return base * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


def _owned(lease: Lease) -> list:
    """Return the conditions under which a worker still owns its attempt."""
    return [
        Job.id == lease.job_id,
        Job.attempt == lease.attempt,
        Job.worker == lease.worker,
        Job.status == JobStatus.running,
    ]


async def _try_update(session: AsyncSession, statement: Any) -> int | None:
    """Run an UPDATE in a savepoint; None when a single-flight index refused it."""
    try:
        async with session.begin_nested():
            result = await session.exec(statement)
    except IntegrityError:
        return None
    return result.rowcount


def _pending_query(identity_id: str | None, group_id: str | None):  # type: ignore[no-untyped-def]
    """Return the query for an identity's or a group's pending job."""
    column = Job.identity_id if identity_id is not None else Job.group_id
    target = identity_id if identity_id is not None else group_id
    return select(Job).where(column == target, col(Job.status).in_(PENDING))


def _flight(job: Job) -> list:
    """Return what a job's single flight is keyed by: its identity, its group, or (for an
    inventory) its integration."""
    if job.kind == JobKind.inventory:
        return inventories_of(job.integration_id)
    if job.identity_id is not None:
        return [Job.identity_id == job.identity_id]
    return [Job.group_id == job.group_id]


def _pending_of(job: Job):  # type: ignore[no-untyped-def]
    """Return the query for the pending job of the same flight as a job."""
    return select(Job).where(*_flight(job), col(Job.status).in_(PENDING))


async def ensure_pending(
    session: AsyncSession,
    integration_id: str,
    *,
    identity_id: str | None = None,
    group_id: str | None = None,
    not_before: datetime | None = None,
    lane: str | None = None,
) -> Job:
    """Return the pending job of an identity or group, creating a queued one if there is none.

    Called in the request's transaction. A new job supersedes the identity's parked jobs
    (blocked, action required): its SCIM resource changed, so the new job reconciles it.
    `not_before` delays only a job this call creates, never one already pending; `lane`
    moves a pending job to the lane its identity needs now.
    """
    query = _pending_query(identity_id, group_id)
    existing = (await session.exec(query)).first()
    if existing is not None:
        if lane is not None and existing.lane != lane:
            existing.lane = lane
            session.add(existing)
        return existing
    job = Job(
        integration_id=integration_id,
        identity_id=identity_id,
        group_id=group_id,
        not_before=not_before,
        lane=lane or Lane.normal,
    )
    try:
        async with session.begin_nested():
            session.add(job)
    except IntegrityError:
        return (await session.exec(query)).one()
    _audit(session, job.id, JobStatus.queued, integration_id=integration_id, lane=job.lane)
    if identity_id is not None:
        parked = await session.exec(
            update(Job)
            .where(
                Job.identity_id == identity_id,
                col(Job.status).in_((JobStatus.blocked, JobStatus.action_required)),
            )
            .values(status=JobStatus.superseded, superseded_by=job.id, finished_at=utcnow())
            .returning(Job.id)
        )
        for parked_id in parked.scalars().all():
            _audit(
                session,
                parked_id,
                JobStatus.superseded,
                integration_id=integration_id,
                superseded_by=job.id,
            )
    return job


def first_job(session: AsyncSession, integration_id: str, identity_id: str, lane: str) -> Job:
    """Queue the first job of an identity created in this transaction.

    No job can exist for an identity that did not exist before: there is nothing to look
    up, to race with or to supersede, so the job is added without a round trip of its own.
    """
    job = Job(integration_id=integration_id, identity_id=identity_id, lane=lane)
    session.add(job)
    _audit(session, job.id, JobStatus.queued, integration_id=integration_id, lane=job.lane)
    return job


async def ensure_inventory(session: AsyncSession, integration_id: str, *, actor: str) -> Job:
    """Return the integration's pending inventory job, creating a queued one if there is none.

    One pending inventory per integration (a partial unique index): a second request, or
    another worker's daily pass, gets the same job.
    """
    query = select(Job).where(*inventories_of(integration_id), col(Job.status).in_(PENDING))
    existing = (await session.exec(query)).first()
    if existing is not None:
        return existing
    job = Job(integration_id=integration_id, kind=JobKind.inventory)
    try:
        async with session.begin_nested():
            session.add(job)
    except IntegrityError:
        return (await session.exec(query)).one()
    _audit(session, job.id, JobStatus.queued, actor=actor, integration_id=integration_id)
    return job


def lane_of(identity: Identity) -> str:
    """Return the lane of an identity's job: urgent when it should lose access."""
    return Lane.urgent if identity.deleted_at is not None or not identity.active else Lane.normal


@dataclass(frozen=True)
class Claim:
    """What a worker's claim of an attempt found: its lease and job, or why not."""

    job: Job | None
    lease: Lease | None
    busy: bool = False


async def claim(db: Database, job_id: str, attempt: int, worker: str, *, lease_s: float) -> Claim:
    """Move a deliverable attempt to running under a lease, once, whoever else tries.

    A stale delivery (another attempt, a job already running or done) claims nothing. When
    another job of the same identity runs, the unique index refuses the claim: the job stays
    pending with `not_before` at the other job's lease end (a bounded wait, not a spin), and
    the other job's worker delivers it as soon as it finishes.
    """
    now = utcnow()
    lease = Lease(job_id, attempt, worker)
    async with db.session() as session:
        claimed = await _try_update(
            session,
            update(Job)
            .where(
                Job.id == job_id,
                Job.attempt == attempt,
                col(Job.status).in_(DELIVERABLE),
                or_(
                    col(Job.not_before).is_(None),
                    col(Job.not_before) <= now + timedelta(seconds=DELIVERY_SLACK_S),
                ),
            )
            .values(
                status=JobStatus.running,
                worker=worker,
                started_at=now,
                lease_until=now + timedelta(seconds=lease_s),
                not_before=None,
            ),
        )
        if claimed is None:
            await _wait_for_runner(session, job_id, now)
            return Claim(None, None, busy=True)
        if claimed == 1:
            _audit(session, job_id, JobStatus.running, actor=worker, attempt=attempt)
        await session.commit()
        if claimed != 1:
            return Claim(None, None)
        job = await session.get(Job, job_id)
        return Claim(job, lease)


async def _wait_for_runner(session: AsyncSession, job_id: str, now: datetime) -> None:
    """Hold a pending job until its identity's running job's lease ends, at most a bound."""
    job = await session.get(Job, job_id)
    if job is None:
        return
    running = (
        await session.exec(select(Job).where(*_flight(job), Job.status == JobStatus.running))
    ).first()
    until = now + timedelta(seconds=BUSY_WAIT_MAX_S)
    if running is not None and running.lease_until is not None:
        until = min(until, running.lease_until)
    await session.exec(
        update(Job)
        .where(Job.id == job_id, col(Job.status).in_(DELIVERABLE))
        .values(not_before=until)
    )
    await session.commit()


async def renew(db: Database, lease: Lease, *, lease_s: float) -> bool:
    """Extend a running attempt's lease; False when the worker no longer owns it."""
    async with db.session() as session:
        result = await session.exec(
            update(Job)
            .where(*_owned(lease))
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        )
        await session.commit()
        return result.rowcount == 1


async def owns(db: Database, lease: Lease) -> bool:
    """Tell whether a worker still holds its attempt: not cancelled, reclaimed or closed."""
    async with db.reader() as session:
        found = (await session.exec(select(Job.id).where(*_owned(lease)))).first()
        return found is not None


async def current_status(db: Database, job_id: str) -> str:
    """Return a job's status as the database holds it now."""
    async with db.reader() as session:
        return await _status_of(session, job_id)


async def finish(db: Database, lease: Lease, status: str, error: str | None) -> str:
    """Close an owned attempt with an outcome; return the job's status as it now stands.

    When the attempt was reclaimed or cancelled meanwhile, nothing is written and the
    status the database holds is returned.
    """
    if status not in OUTCOMES:
        raise JobStateError(f"a worker cannot close a job as {status}")
    async with db.session() as session:
        result = await session.exec(
            update(Job)
            .where(*_owned(lease))
            .values(status=status, error=error, finished_at=utcnow(), lease_until=None)
        )
        if result.rowcount == 1:
            _audit(
                session,
                lease.job_id,
                status,
                actor=lease.worker,
                error=error,
                evidence=await audit.evidence_digest(session, lease.job_id),
            )
            await alerts.queue_job_alert(session, lease.job_id, status, error)
        await session.commit()
        if result.rowcount == 1:
            return status
        return await _status_of(session, lease.job_id)


async def retry_later(
    db: Database, lease: Lease, error: str, *, max_attempts: int, delay_s: float | None = None
) -> str:
    """Give an owned attempt that met a transient fault another attempt after a back-off.

    After the last attempt the job fails. When the identity already has a pending job,
    that newer job reconciles it and this one is superseded.
    """
    if lease.attempt >= max_attempts:
        return await finish(db, lease, JobStatus.failed, error)
    delay = backoff_s(lease.attempt) if delay_s is None else delay_s
    values = {
        "status": JobStatus.retrying,
        "attempt": lease.attempt + 1,
        "error": error,
        "lease_until": None,
        "not_before": utcnow() + timedelta(seconds=delay),
    }
    async with db.session() as session:
        moved = await _try_update(session, update(Job).where(*_owned(lease)).values(**values))
        if moved is None:
            return await _supersede_owned(session, lease, error)
        if moved == 1:
            _audit(
                session,
                lease.job_id,
                JobStatus.retrying,
                actor=lease.worker,
                attempt=lease.attempt + 1,
                error=error,
                evidence=await audit.evidence_digest(session, lease.job_id),
            )
        await session.commit()
        if moved == 1:
            return JobStatus.retrying
        return await _status_of(session, lease.job_id)


def comeback_s(failures: int, *, base_s: float, cap_s: float, seed: str) -> float:
    """Return how long an identity waits after its n-th failed job in a row: doubling, capped.

    The jitter is seeded by the job, so one identity's wait does not change between looks.
    """
    base = min(base_s * 2 ** max(failures - 1, 0), cap_s)
    spread = random.Random(seed).uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
    return min(base * spread, cap_s)


async def failures_in_a_row(session: AsyncSession, identity_id: str) -> int:
    """Count the identity's failed jobs since its last success."""
    last_success = (
        select(func.max(Job.finished_at))
        .where(Job.identity_id == identity_id, Job.status == JobStatus.succeeded)
        .scalar_subquery()
    )
    query = select(func.count()).where(
        Job.identity_id == identity_id,
        Job.status == JobStatus.failed,
        or_(last_success.is_(None), col(Job.finished_at) > last_success),
    )
    return (await session.exec(query)).one()


async def come_back_later(db: Database, job: Job, *, base_s: float, cap_s: float) -> Job | None:
    """Queue a failed job's identity again after a back-off, kept in the database.

    An identity whose account differs from what it should be is never abandoned: each failed
    job in a row doubles the wait, up to `cap_s`. A change already pending goes at once.
    """
    if job.identity_id is None:
        return None
    async with db.session() as session:
        failures = await failures_in_a_row(session, job.identity_id)
        delay = comeback_s(failures, base_s=base_s, cap_s=cap_s, seed=job.id)
        identity = await session.get(Identity, job.identity_id)
        pending = await ensure_pending(
            session,
            job.integration_id,
            identity_id=job.identity_id,
            not_before=utcnow() + timedelta(seconds=delay),
            lane=lane_of(identity) if identity is not None else None,
        )
        await session.commit()
        return pending


async def wait(db: Database, lease: Lease, reason: str) -> str:
    """Hold an owned attempt in `waiting` (its integration's breaker is open): not failed.

    When the identity already has a pending job, that job will wait instead, and this one
    is superseded by it.
    """
    async with db.session() as session:
        return await _wait_in(session, lease, reason)


async def wait_while(
    db: Database, lease: Lease, reason: str, holds: Callable[[AsyncSession], Awaitable[bool]]
) -> str | None:
    """Hold an owned attempt in `waiting` while `holds` says so, asked in the move's own
    transaction (under whatever lock it takes); None: it no longer holds, nothing moved.

    The mass-change guard parks a job so: an approval given meanwhile is never lost.
    """
    async with db.session() as session:
        if not await holds(session):
            return None
        return await _wait_in(session, lease, reason)


async def _wait_in(session: AsyncSession, lease: Lease, reason: str) -> str:
    """Move an owned attempt to `waiting` in this session and commit; return its status."""
    values = {"status": JobStatus.waiting, "error": reason, "lease_until": None}
    moved = await _try_update(session, update(Job).where(*_owned(lease)).values(**values))
    if moved is None:
        return await _supersede_owned(session, lease, reason)
    if moved == 1:
        _audit(
            session,
            lease.job_id,
            JobStatus.waiting,
            actor=lease.worker,
            error=reason,
            evidence=await audit.evidence_digest(session, lease.job_id),
        )
    await session.commit()
    if moved == 1:
        return JobStatus.waiting
    return await _status_of(session, lease.job_id)


async def release_waiting(
    db: Database, integration_id: str, *, reason: str | None = None
) -> Sequence[Job]:
    """Queue every job of an integration that waited (for its breaker, or only those that
    waited for `reason`); return them to deliver."""
    waited = [Job.integration_id == integration_id, Job.status == JobStatus.waiting]
    if reason is not None:
        waited.append(Job.error == reason)
    async with db.session() as session:
        waiting = (await session.exec(select(Job).where(*waited))).all()
        released = await session.exec(
            update(Job)
            .where(*waited)
            .values(status=JobStatus.queued, not_before=None)
            .returning(Job.id)
        )
        for job_id in released.scalars().all():
            _audit(session, job_id, JobStatus.queued, integration_id=integration_id)
        await session.commit()
        for job in waiting:
            await session.refresh(job)
        return [job for job in waiting if job.status == JobStatus.queued]


async def _supersede_owned(session: AsyncSession, lease: Lease, error: str) -> str:
    """Close an owned attempt as superseded by its identity's pending job."""
    job = await session.get(Job, lease.job_id)
    if job is None:
        return JobStatus.superseded
    newer = (await session.exec(_pending_of(job))).first()
    result = await session.exec(
        update(Job)
        .where(*_owned(lease))
        .values(
            status=JobStatus.superseded,
            superseded_by=newer.id if newer else None,
            error=error,
            finished_at=utcnow(),
            lease_until=None,
        )
    )
    if result.rowcount == 1:
        _audit(
            session,
            lease.job_id,
            JobStatus.superseded,
            actor=lease.worker,
            superseded_by=newer.id if newer else None,
            evidence=await audit.evidence_digest(session, lease.job_id),
        )
    await session.commit()
    if result.rowcount == 1:
        return JobStatus.superseded
    return await _status_of(session, lease.job_id)


async def _status_of(session: AsyncSession, job_id: str) -> str:
    """Return a job's status as the database holds it now."""
    session.expire_all()
    job = await session.get(Job, job_id)
    return job.status if job is not None else JobStatus.cancelled


async def reclaim(db: Database, job_id: str, *, max_attempts: int) -> str | None:
    """Take a running job whose lease lapsed back from its stopped worker.

    Its next attempt is due at once; after the last attempt it fails; when its identity
    already has a pending job, it is superseded by that job. Returns the new status, or
    None when the job was not lapsed any more (renewed, finished, reclaimed by another relay).
    """
    now = utcnow()
    lapsed = [
        Job.id == job_id,
        Job.status == JobStatus.running,
        col(Job.lease_until) < now,
    ]
    async with db.session() as session:
        job = await session.get(Job, job_id)
        if job is None:
            return None
        if job.attempt >= max_attempts:
            values: dict = {
                "status": JobStatus.failed,
                "finished_at": now,
                "error": "the worker running this job stopped renewing its lease",
            }
        else:
            values = {
                "status": JobStatus.retrying,
                "attempt": job.attempt + 1,
                "not_before": now,
                "error": "reclaimed from a worker that stopped",
            }
        moved = await _try_update(
            session, update(Job).where(*lapsed).values(lease_until=None, **values)
        )
        if moved is None:
            newer = (await session.exec(_pending_of(job))).first()
            result = await session.exec(
                update(Job)
                .where(*lapsed)
                .values(
                    status=JobStatus.superseded,
                    superseded_by=newer.id if newer else None,
                    finished_at=now,
                    lease_until=None,
                    error="its worker stopped; a newer job reconciles this identity",
                )
            )
            if result.rowcount == 1:
                _audit(
                    session,
                    job_id,
                    JobStatus.superseded,
                    integration_id=job.integration_id,
                    superseded_by=newer.id if newer else None,
                    evidence=await audit.evidence_digest(session, job_id),
                )
            await session.commit()
            return JobStatus.superseded if result.rowcount == 1 else None
        if moved == 1:
            _audit(
                session,
                job_id,
                values["status"],
                integration_id=job.integration_id,
                attempt=values.get("attempt", job.attempt),
                error=values["error"],
                evidence=await audit.evidence_digest(session, job_id),
            )
            await alerts.queue_job_alert(session, job_id, values["status"], values["error"])
        await session.commit()
        return values["status"] if moved == 1 else None


async def lapsed_jobs(db: Database) -> Sequence[str]:
    """Return the ids of running jobs whose lease has lapsed (a read: every relay pass of
    every worker asks, and an idle worker must not take SQLite's write lock for it)."""
    async with db.reader() as session:
        query = select(Job.id).where(
            Job.status == JobStatus.running, col(Job.lease_until) < utcnow()
        )
        return (await session.exec(query)).all()


async def due_jobs(db: Database, *, identity_id: str | None = None) -> Sequence[Job]:
    """Return the deliverable jobs whose back-off has passed, optionally of one identity."""
    query = select(Job).where(
        col(Job.status).in_(DELIVERABLE),
        or_(col(Job.not_before).is_(None), col(Job.not_before) <= utcnow()),
    )
    if identity_id is not None:
        query = query.where(Job.identity_id == identity_id)
    async with db.reader() as session:
        return (await session.exec(query)).all()


async def hold(db: Database, job_id: str, attempt: int, *, seconds: float) -> None:
    """Keep a deliverable job from being claimed for a while (its integration's gate is full)."""
    async with db.session() as session:
        await session.exec(
            update(Job)
            .where(Job.id == job_id, Job.attempt == attempt, col(Job.status).in_(DELIVERABLE))
            .values(not_before=utcnow() + timedelta(seconds=seconds))
        )
        await session.commit()


async def release_held(db: Database, integration_id: str) -> Sequence[Job]:
    """Make the integration's next held queued job due now, to deliver when a slot frees.

    Urgent jobs (access removal) first, then the longest held.
    """
    urgent_first = case((col(Job.lane) == Lane.urgent, 0), else_=1)
    async with db.session() as session:
        held = (
            await session.exec(
                select(Job)
                .where(
                    Job.integration_id == integration_id,
                    Job.status == JobStatus.queued,
                    col(Job.not_before) > utcnow(),
                )
                .order_by(urgent_first, col(Job.created_at))
                .limit(1)
            )
        ).first()
        if held is None:
            return []
        held.not_before = None
        session.add(held)
        await session.commit()
        return [held]


async def release_next(db: Database, job: Job) -> Sequence[Job]:
    """Return the pending job that waited for this finished one, due now."""
    async with db.session() as session:
        pending = (await session.exec(_pending_of(job))).first()
        if pending is None or pending.status not in DELIVERABLE:
            return []
        pending.not_before = None
        session.add(pending)
        await session.commit()
        return [pending]


async def cancel(db: Database, job_id: str, *, actor: str = AUDIT_SYSTEM_ACTOR) -> Job:
    """Cancel a pending or running job for an operator; a running one stops between actions."""
    async with db.session() as session:
        job = await session.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if not can_move(job.status, JobStatus.cancelled):
            raise JobStateError(f"job {job_id} is {job.status}; only a live job can be cancelled")
        previous = job.status
        result = await session.exec(
            update(Job)
            .where(Job.id == job_id, Job.status == job.status, Job.attempt == job.attempt)
            .values(status=JobStatus.cancelled, finished_at=utcnow(), lease_until=None)
        )
        if result.rowcount == 1:
            _audit(
                session,
                job_id,
                JobStatus.cancelled,
                actor=actor,
                integration_id=job.integration_id,
                previous=previous,
                evidence=await audit.evidence_digest(session, job_id),
            )
        await session.commit()
        if result.rowcount != 1:
            raise JobStateError(f"job {job_id} changed meanwhile; look again")
        await session.refresh(job)
        return job


async def retry(db: Database, job_id: str, *, actor: str = AUDIT_SYSTEM_ACTOR) -> Job:
    """Queue a closed job's next attempt now for an operator; its pending job if it has one."""
    async with db.session() as session:
        job = await session.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.status not in RETRYABLE:
            raise JobStateError(f"job {job_id} is {job.status}; only a closed job can be retried")
        pending = (await session.exec(_pending_of(job))).first()
        if pending is not None:
            return pending
        previous, attempt = job.status, job.attempt
        moved = await _try_update(
            session,
            update(Job)
            .where(Job.id == job_id, Job.status == job.status, Job.attempt == job.attempt)
            .values(
                status=JobStatus.queued,
                attempt=job.attempt + 1,
                not_before=None,
                finished_at=None,
                error=None,
            ),
        )
        if moved == 1:
            _audit(
                session,
                job_id,
                JobStatus.queued,
                actor=actor,
                integration_id=job.integration_id,
                attempt=attempt + 1,
                previous=previous,
            )
        await session.commit()
        if moved is None:
            return (await session.exec(_pending_of(job))).one()
        if moved != 1:
            raise JobStateError(f"job {job_id} changed meanwhile; look again")
        await session.refresh(job)
        return job


async def requeue_waiting(
    session: AsyncSession, integration_id: str, job_ids: Collection[str], *, actor: str
) -> list[str]:
    """Queue these waiting jobs of an integration now, in the caller's transaction.

    Returns the ids moved; the caller commits, then delivers them.
    """
    if not job_ids:
        return []
    released = await session.exec(
        update(Job)
        .where(
            Job.integration_id == integration_id,
            Job.status == JobStatus.waiting,
            col(Job.id).in_(list(job_ids)),
        )
        .values(status=JobStatus.queued, not_before=None)
        .returning(Job.id)
    )
    moved = list(released.scalars().all())
    for job_id in moved:
        _audit(session, job_id, JobStatus.queued, actor=actor, integration_id=integration_id)
    return moved
