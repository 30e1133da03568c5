"""The sign-in circuit breaker of an integration: protect the service account.

A refused sign-in (the login flow's `refused` step: the app turned the credentials down;
transient faults never count) is counted in the database, across every worker. After
`breaker_threshold` refusals the breaker opens: no sign-in is tried, jobs wait in `waiting`
instead of failing, and health turns `broken`. It closes when an operator resumes the
integration, or when a half-open probe (a real sign-in in a fresh context, after a
cool-down) succeeds; any successful sign-in resets the count. Each opening and closing
brings the integration's health up to date (`engine.jobs.integration_health`, its owner).
"""

from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import col, select

from engine.automation.errors import FlowFailed
from engine.constants import AUDIT_SYSTEM_ACTOR
from engine.jobs import integration_health, state
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import Integration, Job, utcnow

BREAKER_OPENED = "integration.breaker_opened"
"""The audit event of an integration turning broken: its webhook is told."""


class BreakerState(StrEnum):
    """Whether an integration may sign in."""

    closed = "closed"
    open = "open"
    half_open = "half_open"


class BreakerOpen(FlowFailed):
    """No sign-in may be tried: the integration's breaker is open."""


class Breaker:
    """The breaker of one integration, as the sign-in gate of one job or probe."""

    def __init__(
        self, db: Database, integration_id: str, *, threshold: int, job_id: str | None = None
    ) -> None:
        self.db = db
        self.integration_id = integration_id
        self.threshold = threshold
        self.job_id = job_id
        self.probing = False

    async def before(self) -> None:
        """Refuse to sign in while the breaker is open (a probe may sign in half-open)."""
        async with self.db.reader() as session:
            integration = await session.get(Integration, self.integration_id)
        if integration is None:
            raise FlowFailed(f"no integration {self.integration_id}")
        allowed = {BreakerState.closed} | ({BreakerState.half_open} if self.probing else set())
        if integration.breaker not in allowed:
            detail = integration.health_detail or "sign-ins were refused"
            raise BreakerOpen(
                f"sign-in paused for integration {self.integration_id}: {detail}; fix the secret"
                f" and run `usher integrations resume {self.integration_id}`"
            )

    async def refused(self, failure: FlowFailed) -> None:
        """Count a refusal; open the breaker at the threshold, or again after a failed probe."""
        where = f" (job {self.job_id})" if self.job_id else " (probe)"
        detail = f"{failure}{where}"[:2000]
        now = utcnow()
        async with self.db.session() as session:
            await session.exec(
                update(Integration)
                .where(Integration.id == self.integration_id)
                .values(refusals=Integration.refusals + 1, health_detail=detail, updated_at=now)
            )
            opened = await session.exec(
                update(Integration)
                .where(
                    Integration.id == self.integration_id,
                    (col(Integration.refusals) >= self.threshold)
                    | (Integration.breaker == BreakerState.half_open),
                )
                .values(breaker=BreakerState.open, breaker_changed_at=now)
            )
            if opened.rowcount == 1:
                audit.record(
                    session,
                    actor=AUDIT_SYSTEM_ACTOR,
                    event_name=BREAKER_OPENED,
                    integration_id=self.integration_id,
                    job_id=self.job_id,
                    target=self.integration_id,
                    detail={"reason": detail},
                )
                await integration_health.refresh(session, self.integration_id, job_id=self.job_id)
            await session.commit()

    async def succeeded(self) -> None:
        """Close the breaker after a sign-in that worked, and release the jobs that waited.

        The sign-in is a success since the last problem: health says so, unless worse holds.
        """
        async with self.db.session() as session:
            result = await session.exec(
                update(Integration)
                .where(
                    Integration.id == self.integration_id,
                    (Integration.refusals != 0) | (Integration.breaker != BreakerState.closed),
                )
                .values(refusals=0, breaker=BreakerState.closed, breaker_changed_at=utcnow())
            )
            if result.rowcount:
                audit.record(
                    session,
                    actor=AUDIT_SYSTEM_ACTOR,
                    event_name="integration.breaker_closed",
                    integration_id=self.integration_id,
                    target=self.integration_id,
                )
            await integration_health.refresh(
                session, self.integration_id, signed_in=True, job_id=self.job_id
            )
            await session.commit()
        if result.rowcount:
            await state.release_waiting(self.db, self.integration_id)


async def is_open(db: Database, integration_id: str) -> bool:
    """Tell whether an integration's breaker stops sign-ins now."""
    async with db.session() as session:
        integration = await session.get(Integration, integration_id)
    return integration is not None and integration.breaker != BreakerState.closed


async def resume(
    db: Database, integration_id: str, *, actor: str = AUDIT_SYSTEM_ACTOR
) -> Sequence[Job]:
    """Close the breaker for an operator who fixed the secret; return the jobs released."""
    async with db.session() as session:
        result = await session.exec(
            update(Integration)
            .where(Integration.id == integration_id)
            .values(refusals=0, breaker=BreakerState.closed, breaker_changed_at=utcnow())
        )
        if result.rowcount == 1:
            audit.record(
                session,
                actor=actor,
                event_name="integration.resumed",
                integration_id=integration_id,
                target=integration_id,
            )
            await integration_health.refresh(session, integration_id, actor=actor)
        await session.commit()
    if result.rowcount != 1:
        raise state.JobNotFound(f"no integration {integration_id}")
    return await state.release_waiting(db, integration_id)


async def claim_probe(db: Database, integration_id: str, *, cooldown_s: float) -> bool:
    """Move an open breaker past its cool-down to half-open, for one worker only."""
    now = utcnow()
    async with db.session() as session:
        result = await session.exec(
            update(Integration)
            .where(
                Integration.id == integration_id,
                Integration.breaker == BreakerState.open,
                col(Integration.breaker_changed_at) <= now - timedelta(seconds=cooldown_s),
            )
            .values(breaker=BreakerState.half_open, breaker_changed_at=now)
        )
        await session.commit()
        return result.rowcount == 1


async def reopen(db: Database, integration_id: str) -> None:
    """Open a half-open breaker again after a probe that did not get through."""
    async with db.session() as session:
        await session.exec(
            update(Integration)
            .where(Integration.id == integration_id, Integration.breaker == BreakerState.half_open)
            .values(breaker=BreakerState.open, breaker_changed_at=utcnow())
        )
        await session.commit()


async def due_probes(db: Database, *, cooldown_s: float) -> Sequence[str]:
    """Return the integrations whose open breaker has cooled down."""
    cutoff = utcnow() - timedelta(seconds=cooldown_s)
    async with db.reader() as session:
        query = select(Integration.id).where(
            Integration.breaker == BreakerState.open,
            col(Integration.breaker_changed_at) <= cutoff,
        )
        return (await session.exec(query)).all()
