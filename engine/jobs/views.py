"""What operators read of a job and may do to it: its record, retry, cancel."""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import AUDIT_SYSTEM_ACTOR, WATCH_IDLE_S
from engine.jobs import events, state
from engine.jobs.queue import JobQueue
from engine.storage.db import Database
from engine.storage.evidence import EvidenceStore
from engine.storage.models import (
    Action,
    Evidence,
    Identity,
    Job,
    JobStatus,
    Step,
)

SCREENSHOT_KIND = "screenshot"


@dataclass
class JobRecord:
    """A job with its actions in order, each action's steps, and each step's evidence."""

    job: Job
    actions: Sequence[Action]
    steps: dict[str, list[Step]] = field(default_factory=dict)
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)


async def job_record(session: AsyncSession, job_id: str) -> JobRecord | None:
    """Return everything an operator reviews of a job, None when there is no such job."""
    job = await session.get(Job, job_id)
    if job is None:
        return None
    actions = (
        await session.exec(
            select(Action)
            .where(Action.job_id == job.id)
            .order_by(col(Action.attempt), col(Action.position))
        )
    ).all()
    steps = (
        await session.exec(
            select(Step)
            .where(col(Step.action_id).in_([a.id for a in actions]))
            .order_by(col(Step.position))
        )
    ).all()
    files = (await session.exec(select(Evidence).where(Evidence.job_id == job.id))).all()
    record = JobRecord(job, actions)
    for step in steps:
        record.steps.setdefault(step.action_id, []).append(step)
    for item in files:
        record.evidence.setdefault(item.step_id or "", []).append(item)
    return record


async def retry_job(
    db: Database, queue: JobQueue, job_id: str, *, actor: str = AUDIT_SYSTEM_ACTOR
) -> Job:
    """Queue a closed job's next attempt now and deliver it; raise JobStateError if it is live."""
    job = await state.retry(db, job_id, actor=actor)
    await queue.enqueue(job)
    return job


async def cancel_job(db: Database, job_id: str, *, actor: str = AUDIT_SYSTEM_ACTOR) -> Job:
    """Cancel a live job; a running one stops before its next action."""
    return await state.cancel(db, job_id, actor=actor)


PARKED = (JobStatus.blocked, JobStatus.action_required)
"""The states of a job that waits for a person: the identity is blocked until then."""


async def unblock_identity(
    db: Database, queue: JobQueue, identity_id: str, *, actor: str = AUDIT_SYSTEM_ACTOR
) -> Job:
    """Retry a blocked identity's parked job now, after an operator fixed what blocked it."""
    async with db.session() as session:
        identity = await session.get(Identity, identity_id)
        if identity is None:
            raise state.JobNotFound(f"no identity {identity_id}")
        parked = (
            await session.exec(
                select(Job)
                .where(Job.identity_id == identity_id, col(Job.status).in_(PARKED))
                .order_by(col(Job.created_at).desc())
            )
        ).first()
    if parked is None:
        raise state.JobStateError(f"identity {identity.user_name} is not blocked")
    return await retry_job(db, queue, parked.id, actor=actor)


async def job_status(db: Database, job_id: str) -> str | None:
    """Return a job's status for a page, reading without SQLite's write lock; None if none."""
    async with db.reader() as session:
        job = await session.get(Job, job_id)
    return job.status if job is not None else None


async def watch_job(db: Database, redis: Redis, job_id: str) -> AsyncIterator[JobRecord]:
    """Yield a job's record now and again after each of its events, until it has ended.

    The subscription starts before the first read, so no step between the two is missed;
    a quiet Redis (or a lost event) costs a re-read every WATCH_IDLE_S, never a missed end.
    """
    async for event in events.listen(redis, job_id, idle_s=WATCH_IDLE_S):
        if event.get("kind") not in (events.SUBSCRIBED, "start", "step", events.FINAL, None):
            continue
        async with db.reader() as session:
            record = await job_record(session, job_id)
        if record is None:
            raise state.JobNotFound(f"no job {job_id}")
        yield record
        if record.job.status in state.FINAL:
            return


def render_job(record: JobRecord, store: EvidenceStore, *, skip: int = 0) -> list[str]:
    """Lay a job's actions and steps out for a terminal, leaving out its first `skip` steps.

    The step table `make demo` prints: position, name, status, duration, screenshot path.
    """
    lines: list[str] = []
    seen = 0
    for action in record.actions:
        steps = record.steps.get(action.id, [])
        start = max(0, skip - seen)
        seen += len(steps)
        if start == 0 and (steps or skip == 0):
            lines.append(f"  attempt {action.attempt} action {action.name}: {action.status}")
        for step in steps[start:]:
            shots = [e for e in record.evidence.get(step.id, []) if e.kind == SCREENSHOT_KIND]
            where = store.locate(shots[0].key) if shots else "-"
            lines.append(
                f"    {step.position:>2}. {step.name[:40]:<40} {step.status:<8}"
                f" {step.duration_ms:>5} ms  {where}"
            )
            if step.error:
                lines.append(f"        error: {step.error}")
    return lines


def step_count(record: JobRecord) -> int:
    """Return how many steps a job has recorded so far."""
    return sum(len(steps) for steps in record.steps.values())
