"""UI drift: the steps that matched only through a fallback locator, for their flow's author.

A step whose own locator found nothing while one of its `fallbacks:` did is recorded with
`failed_locator` (what missed) beside `locator` (what matched), and its action is
`degraded`; the job still succeeds. This module reads those steps back: an app's recent
ones for `usher flows drift`, and those of an integration's last runs for its health and
its page.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import exists
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.integrations import IntegrationError
from engine.constants import DRIFT_REPORT_DAYS, DRIFT_SCAN_STEPS, DRIFT_WINDOW_RUNS
from engine.storage.models import Action, Evidence, Integration, Job, Step, utcnow

SCREENSHOT = "screenshot"


class FallbackStep(BaseModel):
    """One step that needed a fallback: where, what missed, what matched, how often, when."""

    flow: str
    step: str
    failed_locator: str
    locator: str | None
    times: int
    first_seen: datetime
    last_seen: datetime
    job_id: str
    """The newest job whose run needed it."""
    integration_id: str
    screenshot_id: str | None = None
    """The evidence id of that newest step's screenshot, when it was kept."""


async def last_runs(
    session: AsyncSession, integration_id: str, runs: int = DRIFT_WINDOW_RUNS
) -> list[str]:
    """Return the ids of an integration's newest jobs that ran a flow, newest first."""
    ran = exists().where(col(Action.job_id) == col(Job.id))
    query = (
        select(Job.id)
        .where(Job.integration_id == integration_id, ran)
        .order_by(col(Job.created_at).desc(), col(Job.id).desc())
        .limit(runs)
    )
    return list((await session.exec(query)).all())


async def _fallback_steps(session: AsyncSession, *conditions: Any) -> list[FallbackStep]:
    """Group the newest fallback steps matching some conditions by flow, step and locators."""
    query = (
        select(Step, Action.name, Action.job_id, Job.integration_id)
        .join(Action, col(Action.id) == col(Step.action_id))
        .join(Job, col(Job.id) == col(Action.job_id))
        .where(col(Step.failed_locator).is_not(None), *conditions)
        .order_by(col(Step.started_at).desc())
        .limit(DRIFT_SCAN_STEPS)
    )
    found: dict[tuple[str, str, str, str | None], FallbackStep] = {}
    newest: dict[str, FallbackStep] = {}
    for step, flow, job_id, integration_id in (await session.exec(query)).all():
        key = (flow, step.name, step.failed_locator or "", step.locator)
        seen = found.get(key)
        if seen is None:
            found[key] = newest[step.id] = FallbackStep(
                flow=flow,
                step=step.name,
                failed_locator=step.failed_locator or "",
                locator=step.locator,
                times=1,
                first_seen=step.started_at,
                last_seen=step.started_at,
                job_id=job_id,
                integration_id=integration_id,
            )
        else:
            seen.times += 1
            seen.first_seen = step.started_at
    await _add_screenshots(session, newest)
    return list(found.values())


async def _add_screenshots(session: AsyncSession, steps: dict[str, FallbackStep]) -> None:
    """Name the screenshot of each newest fallback step, to show what the page looked like."""
    if not steps:
        return
    query = select(Evidence.step_id, Evidence.id).where(
        col(Evidence.step_id).in_(list(steps)), Evidence.kind == SCREENSHOT
    )
    for step_id, evidence_id in (await session.exec(query)).all():
        steps[step_id or ""].screenshot_id = evidence_id


async def window_fallbacks(session: AsyncSession, job_ids: Sequence[str]) -> list[FallbackStep]:
    """Return the steps of some jobs (an integration's last runs) that needed a fallback."""
    if not job_ids:
        return []
    return await _fallback_steps(session, col(Action.job_id).in_(list(job_ids)))


async def integration_fallbacks(session: AsyncSession, integration_id: str) -> list[FallbackStep]:
    """Return the steps of an integration's last runs that needed a fallback: its drift."""
    return await window_fallbacks(session, await last_runs(session, integration_id))


async def app_fallbacks(
    session: AsyncSession,
    app: str,
    integration_id: str | None = None,
    days: float = DRIFT_REPORT_DAYS,
) -> list[FallbackStep]:
    """Return the steps of an app's flows that needed a fallback in the last days.

    Only one integration's when given; it must run that app.
    """
    query = select(Integration.id).where(Integration.app == app)
    if integration_id is not None:
        integration = await session.get(Integration, integration_id)
        if integration is None or integration.app != app:
            raise IntegrationError(f"no integration {integration_id} of app {app}")
        query = query.where(Integration.id == integration_id)
    integrations = list((await session.exec(query)).all())
    if not integrations:
        return []
    since = utcnow() - timedelta(days=days)
    return await _fallback_steps(
        session, col(Job.integration_id).in_(integrations), col(Job.created_at) >= since
    )


def render_fallbacks(rows: list[FallbackStep], app: str, days: float) -> list[str]:
    """Lay an app's fallback steps out for a terminal: what to update in which flow."""
    span = f"the last {days:g} day{'' if days == 1 else 's'}"
    if not rows:
        return [f"{app}: no step needed a fallback in {span}"]
    lines = [f"{app}: {len(rows)} step(s) matched only through a fallback in {span}"]
    for row in rows:
        lines += [
            f"{row.flow}: step {row.step!r}",
            f"  failed    {row.failed_locator}",
            f"  matched   {row.locator or '-'}",
            f"  seen      {row.times} time(s), last {row.last_seen:%Y-%m-%d %H:%M:%S} UTC"
            f" (first {row.first_seen:%Y-%m-%d %H:%M:%S})",
            f"  job       {row.job_id} (integration {row.integration_id})",
        ]
    return lines
