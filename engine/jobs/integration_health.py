"""An integration's health: one owner, one precedence.

`broken` (the sign-in breaker is open or probing: the app refused the service account) >
`degraded` (a step matched only through a fallback locator in one of the integration's
last DRIFT_WINDOW_RUNS runs) > `healthy` (a run or a sign-in succeeded since the last
problem) > `under_validation` (nothing has succeeded yet, or since the breaker closed).

`refresh` is the only writer of `Integration.health`: the breaker calls it when it opens or
closes, the job runner after each job that ran a flow. It writes by compare-and-set on the
health it read, so when several workers see one change, one of them records it: a turn to
degraded or broken is one audit event and one alert, not one per job.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import AUDIT_SYSTEM_ACTOR, DRIFT_WINDOW_RUNS
from engine.jobs import alerts
from engine.jobs.ui_drift import FallbackStep, last_runs, window_fallbacks
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import Action, ActionStatus, Integration, utcnow

HEALTH_CHANGED = "integration.health"
"""The audit event of an integration whose health changed, with from, to and why."""
DETAIL_MAX = 2000
"""The length of `Integration.health_detail`."""
BREAKER_CLOSED = "closed"
"""`BreakerState.closed`: engine.jobs.breaker imports this module, so not the enum itself."""


class Health(StrEnum):
    """What the IT admin sees of an integration, worst first."""

    broken = "broken"
    degraded = "degraded"
    healthy = "healthy"
    under_validation = "under_validation"


ALERTS: dict[str, str] = {Health.broken: alerts.BROKEN, Health.degraded: alerts.DEGRADED}
"""Turning to one of these tells the integration's webhook, with this event."""


@dataclass(frozen=True)
class Assessment:
    """An integration's health and why."""

    health: str
    detail: str | None


def _when(moment: datetime) -> str:
    """Return a time as health details show it."""
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def drift_detail(drift: list[FallbackStep]) -> str:
    """Say which step needed a fallback, the newest first, since when and what missed."""
    newest = max(drift, key=lambda row: row.last_seen)
    detail = (
        f"step {newest.step!r} of {newest.flow} matched only through its fallback since"
        f" {_when(newest.first_seen)}: {newest.failed_locator} found nothing,"
        f" {newest.locator} matched (job {newest.job_id})"
    )
    others = len(drift) - 1
    if others:
        detail += f"; and {others} other step{'' if others == 1 else 's'}"
    return detail[:DETAIL_MAX]


def precedence(
    *,
    breaker_closed: bool,
    refusal: str | None,
    drift: list[FallbackStep],
    succeeded: bool,
    resumed_at: datetime | None = None,
) -> Assessment:
    """Return the health the facts give, worst first: broken, degraded, healthy, unvalidated.

    `refusal` is why sign-ins were refused; `drift` the fallback steps of the last runs;
    `succeeded` whether a run or a sign-in succeeded since the breaker last changed, at
    `resumed_at` (None: it never did).
    """
    if not breaker_closed:
        return Assessment(Health.broken, refusal or "sign-ins were refused")
    if drift:
        return Assessment(Health.degraded, drift_detail(drift))
    if succeeded:
        return Assessment(
            Health.healthy,
            f"runs succeed; none of the last {DRIFT_WINDOW_RUNS} needed a fallback locator",
        )
    if resumed_at is None:
        return Assessment(Health.under_validation, "no run has succeeded yet")
    return Assessment(
        Health.under_validation,
        f"no run has succeeded since the sign-in breaker closed at {_when(resumed_at)}",
    )


async def _succeeded_since(
    session: AsyncSession, job_ids: list[str], since: datetime | None
) -> bool:
    """Tell whether an action of these jobs succeeded after a moment (None: ever)."""
    if not job_ids:
        return False
    query = select(Action.id).where(
        col(Action.job_id).in_(job_ids), Action.status == ActionStatus.succeeded
    )
    if since is not None:
        query = query.where(col(Action.finished_at) >= since)
    return (await session.exec(query.limit(1))).first() is not None


async def assess(
    session: AsyncSession, integration: Integration, *, signed_in: bool = False
) -> tuple[Assessment, list[FallbackStep]]:
    """Return an integration's health by the precedence, and the drift of its last runs.

    `signed_in`: a sign-in just succeeded. A healthy integration stays so until a problem.
    """
    runs = await last_runs(session, integration.id)
    drift = await window_fallbacks(session, runs)
    succeeded = (
        signed_in
        or integration.health == Health.healthy
        or await _succeeded_since(session, runs, integration.breaker_changed_at)
    )
    found = precedence(
        breaker_closed=integration.breaker == BREAKER_CLOSED,
        refusal=integration.health_detail,
        drift=drift,
        succeeded=succeeded,
        resumed_at=integration.breaker_changed_at,
    )
    return found, drift


async def refresh(
    session: AsyncSession,
    integration_id: str,
    *,
    signed_in: bool = False,
    job_id: str | None = None,
    actor: str = AUDIT_SYSTEM_ACTOR,
) -> Assessment | None:
    """Write an integration's health in the caller's transaction; None when there is none.

    A turn to degraded or broken is recorded in the audit chain and queues one alert,
    naming the job that caused it.
    """
    integration = await session.get(Integration, integration_id, populate_existing=True)
    if integration is None:
        return None
    found, drift = await assess(session, integration, signed_in=signed_in)
    before = integration.health
    if (found.health, found.detail) == (before, integration.health_detail):
        return found
    written = await session.exec(
        update(Integration)
        .where(Integration.id == integration_id, Integration.health == before)
        .values(health=found.health, health_detail=found.detail, updated_at=utcnow())
    )
    if written.rowcount != 1 or found.health == before:
        return found
    audit.record(
        session,
        actor=actor,
        event_name=HEALTH_CHANGED,
        integration_id=integration_id,
        job_id=job_id,
        target=integration_id,
        detail={"from": before, "to": found.health, "why": found.detail},
    )
    if found.health in ALERTS:
        payload = {
            "health": found.health,
            "previous": before,
            "reason": found.detail,
            "job_id": job_id,
            "fallbacks": [row.model_dump(mode="json") for row in drift],
        }
        event = ALERTS[found.health]
        await alerts.queue_alert(session, integration_id, event, payload, job_id=job_id)
    return found


async def refresh_after_run(db: Database, integration_id: str, job_id: str) -> Assessment | None:
    """Bring an integration's health up to date after one of its jobs ran a flow."""
    async with db.session() as session:
        found = await refresh(session, integration_id, job_id=job_id)
        await session.commit()
    return found
