"""The sweep: every identity whose account is behind what the IdP says gets a job again.

A job can end without the account matching (its attempts ran out, a worker died at the
wrong moment, a delivery was lost with Redis): the identity must not be abandoned. The
sweep runs on each worker's maintenance timer, outside the job slots, and queues every
identity whose account has not reconciled its newest generation and that has no live or
parked job, once its back-off since its last failed job has passed.
"""

import logging
from datetime import timedelta

from sqlalchemy import exists, or_
from sqlmodel import col, select

from engine.jobs import state
from engine.jobs.queue import JobQueue
from engine.storage.db import Database
from engine.storage.models import AppAccount, Identity, Job, JobStatus, utcnow

log = logging.getLogger(__name__)

HELD: frozenset[str] = state.LIVE | {JobStatus.blocked, JobStatus.action_required}
"""An identity with a job in one of these is being handled or waits for a person."""


async def behind(
    db: Database, *, limit: int, integration_id: str | None = None
) -> list[tuple[str, str]]:
    """Return (identity, integration) of identities behind their generation with no held job."""
    held = exists().where(Job.identity_id == Identity.id, col(Job.status).in_(HELD))
    query = (
        select(Identity.id, Identity.integration_id)
        .outerjoin(AppAccount, col(AppAccount.identity_id) == Identity.id)
        .where(
            or_(
                col(AppAccount.id).is_(None),
                col(AppAccount.reconciled_generation) < Identity.generation,
            ),
            ~held,
        )
        .limit(limit)
    )
    if integration_id is not None:
        query = query.where(Identity.integration_id == integration_id)
    async with db.reader() as session:
        return [(row[0], row[1]) for row in (await session.exec(query)).all()]


async def _requeue(
    db: Database, identity_id: str, integration_id: str, *, base_s: float, cap_s: float
) -> Job | None:
    """Queue one identity's job if its last job allows it now; None when it must wait."""
    async with db.session() as session:
        latest = (
            await session.exec(
                select(Job)
                .where(Job.identity_id == identity_id)
                .order_by(col(Job.created_at).desc())
                .limit(1)
            )
        ).first()
        if latest is not None and latest.status == JobStatus.cancelled:
            return None
        if latest is not None and latest.status == JobStatus.failed:
            failures = await state.failures_in_a_row(session, identity_id)
            wait = state.comeback_s(failures, base_s=base_s, cap_s=cap_s, seed=latest.id)
            finished = latest.finished_at or latest.created_at
            if finished + timedelta(seconds=wait) > utcnow():
                return None
        identity = await session.get(Identity, identity_id)
        lane = state.lane_of(identity) if identity is not None else None
        job = await state.ensure_pending(
            session, integration_id, identity_id=identity_id, lane=lane
        )
        await session.commit()
        return job


async def sweep(
    db: Database,
    queue: JobQueue,
    *,
    base_s: float,
    cap_s: float,
    limit: int,
    integration_id: str | None = None,
) -> int:
    """Queue every identity the sweep finds due, of one integration or all; return how many."""
    queued: list[Job] = []
    for identity_id, owner in await behind(db, limit=limit, integration_id=integration_id):
        try:
            job = await _requeue(db, identity_id, owner, base_s=base_s, cap_s=cap_s)
        except Exception:
            log.exception("sweep could not queue identity %s; it tries next pass", identity_id)
            continue
        if job is not None:
            queued.append(job)
    if queued:
        log.warning("sweep queued %d identities whose accounts are behind", len(queued))
    await queue.enqueue_all(queued)
    return len(queued)
