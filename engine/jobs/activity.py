"""The Activity: jobs newest first, filtered, paged by key over an index (no OFFSET)."""

import base64
import binascii
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import and_, exists, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from engine.constants import ACTIVITY_PAGE_SIZE
from engine.storage.models import Action, Identity, Integration, Job, JobKind, ScimGroup


class ActivityFilter(BaseModel):
    """What an operator narrows the Activity to; every field is optional."""

    integration_id: str | None = None
    identity_id: str | None = None
    status: str | None = None
    action: str | None = None
    user: str | None = None
    """A part of the userName or display name, any case."""
    since: datetime | None = None
    until: datetime | None = None


class ActivityAction(BaseModel):
    """One action a job ran, with its entitlement value if it had one."""

    name: str
    target: str | None
    status: str


class ActivityRow(BaseModel):
    """One job as the Activity lists it."""

    id: str
    integration_id: str
    integration_name: str
    identity_id: str | None
    user_name: str | None
    group_id: str | None
    group_name: str | None
    kind: str = JobKind.reconcile
    """inventory: a run of list_users over the app's accounts, for no identity."""
    status: str
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    actions: list[ActivityAction]
    error: str | None


class ActivityPage(BaseModel):
    """One page of the Activity and the cursor of the next, if any."""

    rows: list[ActivityRow]
    next_cursor: str | None


def encode_cursor(job: Job) -> str:
    """Return the opaque cursor just after a job: its creation time and id."""
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    """Return the (creation time, id) a cursor names; None for a cursor that is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, job_id = raw.partition("|")
        return datetime.fromisoformat(stamp), job_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def _duration_s(job: Job) -> float | None:
    """Return how long a finished job ran, None while it has not."""
    if job.started_at is None or job.finished_at is None:
        return None
    return round((job.finished_at - job.started_at).total_seconds(), 1)


def activity_query(
    wanted: ActivityFilter, *, cursor: str | None = None, limit: int = ACTIVITY_PAGE_SIZE
) -> Select:
    """Return the query of one page: newest first after `cursor`, along (created, id).

    Each filter narrows the walk of the index (ix_job_activity, or per integration
    ix_job_activity_integration); the page reads `limit + 1` jobs to know whether
    another page follows. No OFFSET: the 1,000th page costs what the first does.
    """
    query = select(Job)
    if wanted.integration_id:
        query = query.where(Job.integration_id == wanted.integration_id)
    if wanted.identity_id:
        query = query.where(Job.identity_id == wanted.identity_id)
    if wanted.status:
        query = query.where(Job.status == wanted.status)
    if wanted.since:
        query = query.where(Job.created_at >= wanted.since)
    if wanted.until:
        query = query.where(Job.created_at < wanted.until)
    if wanted.action:
        query = query.where(
            exists().where(and_(Action.job_id == Job.id, Action.name == wanted.action))
        )
    if wanted.user:
        pattern = f"%{wanted.user.strip().casefold()}%"
        query = query.join(Identity, Identity.id == Job.identity_id).where(
            or_(
                col(Identity.user_name_key).like(pattern),
                col(Identity.display_name).ilike(pattern),
            )
        )
    after = decode_cursor(cursor) if cursor else None
    if after is not None:
        stamp, job_id = after
        query = query.where(
            or_(Job.created_at < stamp, and_(Job.created_at == stamp, col(Job.id) < job_id))
        )
    return query.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(limit + 1)


async def list_activity(
    session: AsyncSession,
    wanted: ActivityFilter,
    *,
    cursor: str | None = None,
    limit: int = ACTIVITY_PAGE_SIZE,
) -> ActivityPage:
    """Return a page of jobs newest first, after `cursor`, and the cursor of the next."""
    jobs = list((await session.exec(activity_query(wanted, cursor=cursor, limit=limit))).all())
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return ActivityPage(
        rows=await _rows(session, jobs),
        next_cursor=encode_cursor(jobs[-1]) if more and jobs else None,
    )


async def _rows(session: AsyncSession, jobs: list[Job]) -> list[ActivityRow]:
    """Return the Activity rows of a page of jobs, with names and actions in three reads."""
    identity_ids = {j.identity_id for j in jobs if j.identity_id}
    group_ids = {j.group_id for j in jobs if j.group_id}
    integration_ids = {j.integration_id for j in jobs}
    users = dict(
        (
            await session.exec(
                select(Identity.id, Identity.user_name).where(col(Identity.id).in_(identity_ids))
            )
        ).all()
    )
    groups = dict(
        (
            await session.exec(
                select(ScimGroup.id, ScimGroup.display_name).where(col(ScimGroup.id).in_(group_ids))
            )
        ).all()
    )
    names = dict(
        (
            await session.exec(
                select(Integration.id, Integration.name).where(
                    col(Integration.id).in_(integration_ids)
                )
            )
        ).all()
    )
    actions: dict[str, list[ActivityAction]] = {}
    found = await session.exec(
        select(Action)
        .where(col(Action.job_id).in_([j.id for j in jobs]))
        .order_by(col(Action.attempt), col(Action.position))
    )
    for action in found.all():
        actions.setdefault(action.job_id, []).append(
            ActivityAction(name=action.name, target=action.target, status=action.status)
        )
    return [
        ActivityRow(
            id=job.id,
            integration_id=job.integration_id,
            integration_name=names.get(job.integration_id, job.integration_id),
            identity_id=job.identity_id,
            user_name=users.get(job.identity_id) if job.identity_id else None,
            group_id=job.group_id,
            group_name=groups.get(job.group_id) if job.group_id else None,
            kind=job.kind,
            status=job.status,
            attempt=job.attempt,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration_s=_duration_s(job),
            actions=actions.get(job.id, []),
            error=job.error,
        )
        for job in jobs
    ]
