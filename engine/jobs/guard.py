"""The mass-change guard: an IdP's mistake never strips an app of its users in one go.

An identity (an account) counts once in an integration's sliding hour (`GUARD_WINDOW_S`)
when a job of it plans to take access away: deactivate, delete, revoke a value, or set a
lower exclusive role (`engine.planner.removes_access`). Once more accounts than the
integration's `max_removals_per_hour` would lose access within the hour, each further job's
removals are **held**: the job runs its creates, updates and grants, then waits in `waiting`
until an operator approves (`usher approve`, `POST /api/integrations/{id}/approve`). Below the
limit nothing changes: a deactivation is still urgent and runs at once.

Every job's removals are one `Removal` row, written under the integration's row lock
(PostgreSQL: `SELECT ... FOR UPDATE`; SQLite: every write transaction begins IMMEDIATE and
holds the only write lock), so workers admitting at once never pass the limit together.
What the guard can foresee counts before it runs (`planned` rows): the members a group change
takes access from, planned when the group job fans out, and the accounts of users the IdP
deactivated or deleted, noted in the SCIM request's own transaction. So a group emptied by
mistake is held whole, and a burst of deactivations is held once the burst, not the jobs
run so far, passes the limit.

A held row stays held, whatever wakes its job (a new change of its identity, the breaker
closing, a retry after a cancel), until an operator approves: approval marks the held rows
approved (their jobs are never held again), queues their jobs, and stops what the guard
admitted before it from counting. The first hold while none is held tells the
integration's webhook (`integration.removals_held`).
"""

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, distinct, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.integrations import IntegrationError, get_integration
from engine.constants import AUDIT_SYSTEM_ACTOR, GUARD_WINDOW_S
from engine.jobs import alerts, state
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import (
    AppAccount,
    Identity,
    Integration,
    Job,
    JobStatus,
    Removal,
    RemovalStatus,
    utcnow,
)

HELD = "integration.removals_held"
"""The audit event and alert of the first hold while none is held: someone must look."""
APPROVED = "integration.removals_approved"
"""The audit event of an operator approving the held removals."""
GUARD_CHANGED = "integration.guard_changed"
"""The audit event of an integration's limit changing."""
RUNS: frozenset[str] = frozenset({RemovalStatus.admitted, RemovalStatus.approved})
"""A row in these states lets its job run its removals on every attempt."""


class HeldRemoval(BaseModel):
    """One account whose removals wait for an operator, as its job planned them."""

    job_id: str
    identity_id: str
    user_name: str
    actions: list[str]
    held_at: datetime


class GuardView(BaseModel):
    """An integration's mass-change guard: its limit, the hour so far and what is held."""

    integration_id: str
    max_removals_per_hour: int
    window_s: int
    accounts_last_hour: int
    """Accounts losing access in the hour: admitted, held, or foreseen by a live job."""
    held: list[HeldRemoval]


def held_reason(integration: Integration) -> str:
    """Say why a job's removals wait, and what releases them."""
    return (
        f"held by the mass-change guard: more than {integration.max_removals_per_hour} accounts"
        " would lose access within an hour; an operator approves with"
        f" `usher approve --integration {integration.id}`"
    )


async def _locked(session: AsyncSession, integration_id: str) -> Integration | None:
    """Read an integration under its row lock, for a decision no other worker may interleave.

    PostgreSQL locks the row; SQLite ignores FOR UPDATE, but its write transactions begin
    IMMEDIATE (`engine.storage.db`), so this one already holds the database's write lock.
    """
    query = (
        select(Integration)
        .where(Integration.id == integration_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(query)).first()


async def _row(session: AsyncSession, job_id: str) -> Removal | None:
    """Return a job's removal row, as the database holds it now."""
    query = select(Removal).where(Removal.job_id == job_id)
    return (await session.exec(query.execution_options(populate_existing=True))).first()


def _counting(integration: Integration, now: datetime) -> list[Any]:
    """Return the conditions of the rows that count against the integration's hour.

    Admitted rows count since the last approval; held and planned ones while their job is
    live (a cancelled one no longer does). Approved and dropped rows never do.
    """
    live = select(Job.id).where(Job.id == Removal.job_id, col(Job.status).in_(state.LIVE))
    admitted = Removal.status == RemovalStatus.admitted
    if integration.removals_approved_at is not None:
        admitted = and_(admitted, col(Removal.counted_at) > integration.removals_approved_at)
    waiting = col(Removal.status).in_((RemovalStatus.held, RemovalStatus.planned))
    return [
        Removal.integration_id == integration.id,
        col(Removal.counted_at) > now - timedelta(seconds=GUARD_WINDOW_S),
        or_(admitted, and_(waiting, live.exists())),
    ]


async def accounts_counted(
    session: AsyncSession, integration: Integration, now: datetime, *, besides: str | None = None
) -> int:
    """Count the distinct accounts losing access in the integration's hour, but `besides`."""
    query = select(func.count(distinct(Removal.identity_id))).where(*_counting(integration, now))
    if besides is not None:
        query = query.where(Removal.identity_id != besides)
    return (await session.exec(query)).one()


async def headroom(session: AsyncSession, integration: Integration) -> int:
    """Return how many more accounts may lose access in the integration's hour, unapproved.

    An inventory's remediation deactivates orphans within this room and leaves the rest
    active for a later run: a wrong matching rule must not strip an app in one go either.
    """
    counted = await accounts_counted(session, integration, utcnow())
    return max(0, integration.max_removals_per_hour - counted)


async def _row_of(session: AsyncSession, job: Job, now: datetime) -> Removal:
    """Return a job's removal row, making a planned one if it has none."""
    row = await _row(session, job.id)
    if row is not None:
        return row
    assert job.identity_id is not None
    row = Removal(
        integration_id=job.integration_id,
        identity_id=job.identity_id,
        job_id=job.id,
        counted_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        found = await _row(session, job.id)
        assert found is not None
        return found
    return row


async def admit(db: Database, job: Job, removals: Sequence[str]) -> str | None:
    """Count a job's account against its integration's hour; return why its removals wait,
    or None when they may run now.

    Decided under the integration's row lock. A job admitted or approved once runs its
    removals on every attempt; a held one stays held until an operator approves.
    """
    now = utcnow()
    async with db.session() as session:
        integration = await _locked(session, job.integration_id)
        if integration is None or job.identity_id is None:
            return None
        row = await _row_of(session, job, now)
        row.actions = list(removals)
        if row.status not in RUNS | {RemovalStatus.held}:
            others = await accounts_counted(session, integration, now, besides=job.identity_id)
            over = others + 1 > integration.max_removals_per_hour
            row.status = RemovalStatus.held if over else RemovalStatus.admitted
            row.counted_at = now
            if over:
                await _tell_once(session, integration, job, others + 1)
        session.add(row)
        await session.commit()
        return held_reason(integration) if row.status == RemovalStatus.held else None


async def _tell_once(
    session: AsyncSession, integration: Integration, job: Job, accounts: int
) -> None:
    """Record and alert the first hold while no other job's removals are held."""
    live = select(Job.id).where(Job.id == Removal.job_id, col(Job.status).in_(state.LIVE))
    others = select(Removal.id).where(
        Removal.integration_id == integration.id,
        Removal.status == RemovalStatus.held,
        Removal.job_id != job.id,
        live.exists(),
    )
    if (await session.exec(others.limit(1))).first() is not None:
        return
    identity = await session.get(Identity, job.identity_id)
    detail = {
        "accounts_last_hour": accounts,
        "max_removals_per_hour": integration.max_removals_per_hour,
        "window_s": GUARD_WINDOW_S,
        "job_id": job.id,
        "identity": identity.user_name if identity else None,
        "approve": f"usher approve --integration {integration.id}",
    }
    audit.record(
        session,
        actor=AUDIT_SYSTEM_ACTOR,
        event_name=HELD,
        integration_id=integration.id,
        job_id=job.id,
        target=integration.id,
        detail=detail,
    )
    await alerts.queue_alert(session, integration.id, HELD, {"guard": detail}, job_id=job.id)


async def park(db: Database, lease: state.Lease, integration_id: str, reason: str) -> str | None:
    """Move a job whose removals are held to `waiting`; None when approved meanwhile.

    Asked under the integration's row lock, as approval is, so an approval given while the
    job ran its grants either finds it waiting or is found here: never lost between.
    """

    async def still_held(session: AsyncSession) -> bool:
        """Tell, under the lock, whether the job's removals still wait for an operator."""
        await _locked(session, integration_id)
        row = await _row(session, lease.job_id)
        return row is not None and row.status == RemovalStatus.held

    return await state.wait_while(db, lease, reason, still_held)


async def forget(db: Database, job_id: str) -> None:
    """Stop counting a job that plans no removal after all (foreseen, or the IdP changed
    its mind while it was held)."""
    pending = (RemovalStatus.planned, RemovalStatus.held)
    async with db.reader() as session:
        row = await _row(session, job_id)
    if row is None or row.status not in pending:
        return
    async with db.session() as session:
        await session.exec(
            update(Removal)
            .where(Removal.job_id == job_id, col(Removal.status).in_(pending))
            .values(status=RemovalStatus.dropped)
        )
        await session.commit()


async def foresee(session: AsyncSession, job: Job, removals: Sequence[str] = ()) -> None:
    """Note, in the caller's transaction, that a pending job will take access away, so the
    guard counts its account before it runs."""
    if job.identity_id is None or await _row(session, job.id) is not None:
        return
    row = Removal(
        integration_id=job.integration_id,
        identity_id=job.identity_id,
        job_id=job.id,
        actions=list(removals),
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return


async def foresee_loss(session: AsyncSession, job: Job) -> None:
    """Note a job of a user the IdP deactivated or deleted, when Usher made its account."""
    query = select(AppAccount.id).where(
        AppAccount.identity_id == job.identity_id, col(AppAccount.exists).is_(True)
    )
    if (await session.exec(query)).first() is not None:
        await foresee(session, job)


async def wake(session: AsyncSession, job: Job) -> None:
    """Queue a held job again, in the caller's transaction, when its identity changed: it
    plans anew, runs what is not a removal (a grant the change brought) and parks again
    while removals stay held; one the IdP no longer removes is not held at all."""
    if job.status != JobStatus.waiting:
        return
    row = await _row(session, job.id)
    if row is not None and row.status == RemovalStatus.held:
        await state.requeue_waiting(session, job.integration_id, [job.id], actor=AUDIT_SYSTEM_ACTOR)


async def approve(db: Database, integration_id: str, *, actor: str) -> list[Job]:
    """Approve every held removal of an integration for an operator; return the jobs queued.

    The held rows become approved (their jobs never held again) and their waiting jobs are
    queued; what the guard admitted before now stops counting. Nothing held, nothing done.
    """
    now = utcnow()
    async with db.session() as session:
        integration = await _locked(session, integration_id)
        if integration is None:
            raise IntegrationError(f"no integration {integration_id!r}")
        query = select(Removal).where(
            Removal.integration_id == integration.id, Removal.status == RemovalStatus.held
        )
        rows = (await session.exec(query)).all()
        if not rows:
            return []
        for row in rows:
            row.status, row.approved_by, row.approved_at = RemovalStatus.approved, actor, now
            session.add(row)
        moved = await state.requeue_waiting(
            session, integration.id, [row.job_id for row in rows], actor=actor
        )
        integration.removals_approved_at = now
        session.add(integration)
        audit.record(
            session,
            actor=actor,
            event_name=APPROVED,
            integration_id=integration.id,
            target=integration.id,
            detail={"accounts": len({row.identity_id for row in rows}), "jobs": sorted(moved)},
        )
        await session.commit()
        jobs = await session.exec(select(Job).where(col(Job.id).in_(moved)))
        return list(jobs.all())


async def set_guard(
    session: AsyncSession, integration_id: str, max_removals: int, *, actor: str
) -> Integration:
    """Change how many accounts may lose access within an hour before the rest wait; audited.

    0 holds every removal for an operator's approval.
    """
    if max_removals < 0:
        raise IntegrationError(
            f"the guard's limit is a number of accounts, 0 or more, not {max_removals}"
        )
    integration = await get_integration(session, integration_id)
    before = integration.max_removals_per_hour
    integration.max_removals_per_hour = max_removals
    integration.updated_at = utcnow()
    session.add(integration)
    audit.record(
        session,
        actor=actor,
        event_name=GUARD_CHANGED,
        integration_id=integration.id,
        target=integration.id,
        detail={"max_removals_per_hour": max_removals, "before": before},
    )
    await session.commit()
    await session.refresh(integration)
    return integration


async def held_jobs(session: AsyncSession, integration_id: str) -> dict[str, Removal]:
    """Return the integration's removals held for approval, by identity, whose job waits."""
    query = (
        select(Removal)
        .join(Job, col(Job.id) == col(Removal.job_id))
        .where(
            Removal.integration_id == integration_id,
            Removal.status == RemovalStatus.held,
            Job.status == JobStatus.waiting,
        )
        .order_by(col(Removal.counted_at))
    )
    return {row.identity_id: row for row in (await session.exec(query)).all()}


async def is_held(session: AsyncSession, job_id: str) -> bool:
    """Tell whether a job waits for an operator to approve its removals."""
    row = await _row(session, job_id)
    job = await session.get(Job, job_id)
    held = row is not None and row.status == RemovalStatus.held
    return held and job is not None and job.status == JobStatus.waiting


async def guard_view(session: AsyncSession, integration_id: str) -> GuardView:
    """Describe an integration's guard: its limit, the accounts of the hour, what is held."""
    integration = await get_integration(session, integration_id)
    held = await held_jobs(session, integration.id)
    names = await _user_names(session, held)
    return GuardView(
        integration_id=integration.id,
        max_removals_per_hour=integration.max_removals_per_hour,
        window_s=GUARD_WINDOW_S,
        accounts_last_hour=await accounts_counted(session, integration, utcnow()),
        held=[
            HeldRemoval(
                job_id=row.job_id,
                identity_id=row.identity_id,
                user_name=names.get(row.identity_id, row.identity_id),
                actions=list(row.actions),
                held_at=row.counted_at,
            )
            for row in held.values()
        ],
    )


async def _user_names(session: AsyncSession, identity_ids: Collection[str]) -> dict[str, str]:
    """Return the userNames of identities, by id."""
    if not identity_ids:
        return {}
    query = select(Identity.id, Identity.user_name).where(col(Identity.id).in_(identity_ids))
    return dict((await session.exec(query)).all())


def render_guard(view: GuardView) -> str:
    """Lay an integration's guard out for a terminal: the hour so far and what is held."""
    lines = [
        f"mass-change guard  at most {view.max_removals_per_hour} accounts lose access within"
        f" {view.window_s // 60} minutes without approval; {view.accounts_last_hour} so far",
    ]
    if not view.held:
        lines.append("nothing held")
        return "\n".join(lines)
    lines.append(
        f"held for approval ({len(view.held)}; `usher approve --integration {view.integration_id}`)"
    )
    width = max(len(item.user_name) for item in view.held)
    for item in view.held:
        held_at = item.held_at.strftime("%Y-%m-%d %H:%M:%S")
        actions = ", ".join(item.actions)
        lines.append(f"  {item.user_name:<{width}}  {held_at}  {actions}  (job {item.job_id})")
    return "\n".join(lines)
