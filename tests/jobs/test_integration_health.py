"""An integration's health, one precedence: broken > degraded > healthy > under_validation.

The rule itself, then its one writer over SQLite and PostgreSQL: runs recorded as the job
runner records them (an action, its steps, one matched only through a fallback), the
breaker opening and resuming, and the alerts a turn to degraded or broken queues, once.
"""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import col, select

from engine.apps.webhooks import recent_deliveries, set_webhook
from engine.automation.errors import FlowFailed
from engine.constants import DRIFT_WINDOW_RUNS
from engine.jobs import state
from engine.jobs.breaker import Breaker, resume
from engine.jobs.integration_health import Health, precedence, refresh, refresh_after_run
from engine.jobs.ui_drift import FallbackStep
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import (
    Action,
    ActionStatus,
    AuditEvent,
    Identity,
    Integration,
    JobStatus,
    Step,
)
from engine.storage.vault import Vault
from tests.jobs.support import new_identity, running_job

INVITE = "role='link', name='Invite user'"
ADD = "role='link', name='Add user'"
SINCE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def drifted(step: str = "Open the invite form", flow: str = "create_user") -> FallbackStep:
    """Return one step of a last run that matched only through its fallback."""
    return FallbackStep(
        flow=flow,
        step=step,
        failed_locator=INVITE,
        locator=ADD,
        times=2,
        first_seen=SINCE,
        last_seen=SINCE,
        job_id="j1",
        integration_id="i1",
    )


@pytest.mark.parametrize(
    ("closed", "drift", "succeeded", "health"),
    [
        (False, [drifted()], True, Health.broken),
        (False, [], False, Health.broken),
        (True, [drifted()], True, Health.degraded),
        (True, [drifted()], False, Health.degraded),
        (True, [], True, Health.healthy),
        (True, [], False, Health.under_validation),
    ],
)
def test_the_worst_fact_wins(
    closed: bool, drift: list[FallbackStep], succeeded: bool, health: str
) -> None:
    """An open breaker outranks drift, drift outranks success, success outranks nothing."""
    found = precedence(
        breaker_closed=closed, refusal="the password was refused", drift=drift, succeeded=succeeded
    )
    assert found.health == health


def test_each_health_says_why() -> None:
    """Broken names the refusal; degraded the step, its flow, since when and what missed."""
    broken = precedence(breaker_closed=False, refusal="bad password", drift=[], succeeded=True)
    assert broken.detail == "bad password"
    degraded = precedence(
        breaker_closed=True,
        refusal=None,
        drift=[drifted(), drifted("Type the email")],
        succeeded=True,
    )
    assert degraded.detail is not None
    assert degraded.detail.startswith(
        "step 'Open the invite form' of create_user matched only through its fallback since"
        " 2026-01-02 03:04:05 UTC"
    )
    assert f"{INVITE} found nothing" in degraded.detail and "and 1 other step" in degraded.detail
    fresh = precedence(breaker_closed=True, refusal=None, drift=[], succeeded=False)
    assert fresh.detail == "no run has succeeded yet"
    resumed = precedence(
        breaker_closed=True, refusal=None, drift=[], succeeded=False, resumed_at=SINCE
    )
    assert resumed.detail == (
        "no run has succeeded since the sign-in breaker closed at 2026-01-02 03:04:05 UTC"
    )


async def run_once(database: Database, identity: Identity, *, fallback: bool) -> str:
    """Run one job as the runner records it: create_user succeeds, its invite step through
    the fallback or not; then bring the integration's health up to date. Return the job id."""
    claimed = await running_job(database, identity)
    assert claimed.job is not None and claimed.lease is not None
    async with database.session() as session:
        action = Action(
            job_id=claimed.job.id,
            name="create_user",
            status=ActionStatus.succeeded,
            degraded=fallback,
        )
        session.add(action)
        await session.flush()
        session.add(
            Step(
                action_id=action.id,
                position=1,
                name="Open the invite form",
                kind="click",
                locator=ADD if fallback else INVITE,
                failed_locator=INVITE if fallback else None,
            )
        )
        action.finished_at = action.started_at
        await session.commit()
    await state.finish(database, claimed.lease, JobStatus.succeeded, None)
    await refresh_after_run(database, identity.integration_id, claimed.job.id)
    return claimed.job.id


async def health_of(database: Database, integration_id: str) -> tuple[str, str | None]:
    """Return an integration's health and why, as stored."""
    async with database.session() as session:
        integration = await session.get(Integration, integration_id)
    assert integration is not None
    return integration.health, integration.health_detail


async def alerted(database: Database, integration_id: str) -> list[str]:
    """Return the events of an integration's alert deliveries, oldest first."""
    async with database.session() as session:
        found = await recent_deliveries(session, integration_id, limit=100)
    return [delivery.event for delivery in reversed(found)]


async def test_drift_degrades_once_breaks_and_heals_after_clean_runs(
    database: Database, tmp_path: Path
) -> None:
    """Nothing run: under_validation; a clean run: healthy; a run through a fallback:
    degraded, one alert however many such runs; a refused sign-in: broken, one alert;
    resumed: degraded again while the drift is in the last runs; DRIFT_WINDOW_RUNS clean
    runs: healthy. Each change is an audit event."""
    settings = Settings(data_dir=tmp_path / "var")
    settings.ensure_data_dir()
    identity = await new_identity(database)
    integration_id = identity.integration_id
    async with database.session() as session:
        await set_webhook(
            session,
            Vault.from_path(settings.vault_key_path),
            integration_id,
            "http://h/",
            actor="t",
        )
        await refresh(session, integration_id)
        await session.commit()
    assert await health_of(database, integration_id) == (
        Health.under_validation,
        "no run has succeeded yet",
    )

    await run_once(database, identity, fallback=False)
    assert (await health_of(database, integration_id))[0] == Health.healthy
    first = await run_once(database, identity, fallback=True)
    health, detail = await health_of(database, integration_id)
    assert health == Health.degraded
    assert detail is not None and detail.startswith(
        "step 'Open the invite form' of create_user matched only through its fallback since"
    )
    await run_once(database, identity, fallback=True)
    assert await alerted(database, integration_id) == ["integration.degraded"]
    async with database.session() as session:
        [delivery] = await recent_deliveries(session, integration_id)
    assert delivery.job_id == first
    assert delivery.payload["fallbacks"][0]["failed_locator"] == INVITE
    assert delivery.payload["previous"] == Health.healthy

    await Breaker(database, integration_id, threshold=1).refused(FlowFailed("password refused"))
    assert await health_of(database, integration_id) == (Health.broken, "password refused (probe)")
    await Breaker(database, integration_id, threshold=1).refused(FlowFailed("refused again"))
    assert await alerted(database, integration_id) == [
        "integration.degraded",
        "integration.broken",
    ]

    await resume(database, integration_id, actor="alice")
    assert (await health_of(database, integration_id))[0] == Health.degraded
    for _ in range(DRIFT_WINDOW_RUNS - 1):
        await run_once(database, identity, fallback=False)
    assert (await health_of(database, integration_id))[0] == Health.degraded
    await run_once(database, identity, fallback=False)
    assert (await health_of(database, integration_id))[0] == Health.healthy
    assert await alerted(database, integration_id) == [
        "integration.degraded",
        "integration.broken",
        "integration.degraded",
    ]
    async with database.session() as session:
        changes = (
            await session.exec(
                select(AuditEvent)
                .where(
                    AuditEvent.integration_id == integration_id,
                    AuditEvent.event == "integration.health",
                )
                .order_by(col(AuditEvent.seq))
            )
        ).all()
    assert [(e.detail["from"], e.detail["to"]) for e in changes] == [
        ("under_validation", "healthy"),
        ("healthy", "degraded"),
        ("degraded", "broken"),
        ("broken", "degraded"),
        ("degraded", "healthy"),
    ]
    assert changes[3].actor == "alice"


async def test_a_resumed_integration_is_unvalidated_until_a_run_succeeds(
    database: Database,
) -> None:
    """Resuming a broken integration with no drift leaves nothing proved: under_validation,
    saying since when; the next clean run makes it healthy."""
    identity = await new_identity(database)
    await Breaker(database, identity.integration_id, threshold=1).refused(FlowFailed("no"))
    await resume(database, identity.integration_id)
    health, detail = await health_of(database, identity.integration_id)
    assert health == Health.under_validation
    assert detail is not None and detail.startswith(
        "no run has succeeded since the sign-in breaker closed at"
    )
    await run_once(database, identity, fallback=False)
    assert (await health_of(database, identity.integration_id))[0] == Health.healthy
