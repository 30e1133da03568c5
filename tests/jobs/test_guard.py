"""The mass-change guard on SQLite and PostgreSQL: counting, holding, approval, the alert.

Jobs are claimed for real (`engine.jobs.state`), the guard counts in the real database, and
concurrent admissions run on separate connections, as several workers' would.
"""

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select
from typer.testing import CliRunner

from cli.main import app
from engine.apps.integrations import IntegrationError
from engine.apps.webhooks import recent_deliveries, set_webhook
from engine.constants import GUARD_MAX_REMOVALS
from engine.jobs import guard, state
from engine.jobs.breaker import resume
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import (
    AuditEvent,
    Job,
    JobStatus,
    Removal,
    RemovalStatus,
    utcnow,
)
from engine.storage.vault import Vault
from tests.databases import run_apart
from tests.jobs.support import (
    LEASE_S,
    REVOKE,
    admit_and_park,
    claimed,
    guarded_integration,
    pending_job,
    reload,
)


async def view(database: Database, integration_id: str) -> guard.GuardView:
    """Read the guard's view of an integration."""
    async with database.reader() as session:
        return await guard.guard_view(session, integration_id)


async def test_the_guard_admits_up_to_the_limit_and_holds_the_rest(database: Database) -> None:
    """Three accounts an hour: the first three run at once, the fourth and fifth wait, their
    jobs in `waiting` with the reason, listed as held."""
    people = await guarded_integration(database, 5, limit=3)
    integration_id = people[0].integration_id
    claims = [await claimed(database, person) for person in people]
    reasons = [await admit_and_park(database, claim) for claim in claims]
    assert reasons[:3] == [None, None, None]
    assert all(r is not None and "more than 3 accounts" in r for r in reasons[3:])
    assert f"usher approve --integration {integration_id}" in (reasons[3] or "")
    for claim in claims[3:]:
        assert claim.job is not None
        held = await reload(database, claim.job.id)
        assert held.status == JobStatus.waiting and held.error == reasons[3]
    seen = await view(database, integration_id)
    assert seen.accounts_last_hour == 5 and seen.max_removals_per_hour == 3
    assert [h.user_name for h in seen.held] == [p.user_name for p in people[3:]]
    assert all(h.actions == REVOKE for h in seen.held)


async def test_workers_admitting_at_once_never_pass_the_limit(database: Database) -> None:
    """Twenty jobs ask at the same moment, each on its own connection: exactly five run."""
    people = await guarded_integration(database, 20, limit=5)
    claims = [await claimed(database, person) for person in people]

    async def admit(claim: state.Claim) -> str | None:
        """Admit one job as its worker would."""
        assert claim.job is not None
        return await guard.admit(database, claim.job, REVOKE)

    reasons = await asyncio.gather(*(admit(claim) for claim in claims))
    assert reasons.count(None) == 5
    async with database.reader() as session:
        rows = (
            await session.exec(
                select(Removal).where(Removal.integration_id == people[0].integration_id)
            )
        ).all()
    assert (
        sorted(r.status for r in rows) == [RemovalStatus.admitted] * 5 + [RemovalStatus.held] * 15
    )


async def test_approval_runs_the_held_and_never_holds_them_again(database: Database) -> None:
    """Approving queues the held jobs; their next attempt is admitted though the hour is
    over the limit, and what was admitted before the approval no longer counts."""
    people = await guarded_integration(database, 4, limit=2)
    integration_id = people[0].integration_id
    claims = [await claimed(database, person) for person in people]
    for claim in claims:
        await admit_and_park(database, claim)
    released = await guard.approve(database, integration_id, actor="alice")
    held_ids = {c.job.id for c in claims[2:] if c.job is not None}
    assert {job.id for job in released} == held_ids
    assert all(job.status == JobStatus.queued for job in released)
    for job in released:
        again = await state.claim(database, job.id, job.attempt, "w-after", lease_s=LEASE_S)
        assert again.job is not None
        assert await guard.admit(database, again.job, REVOKE) is None
    seen = await view(database, integration_id)
    assert seen.held == [] and seen.accounts_last_hour == 0
    async with database.reader() as session:
        approved = (
            await session.exec(select(AuditEvent).where(AuditEvent.event == guard.APPROVED))
        ).all()
        rows = (await session.exec(select(Removal).where(col(Removal.job_id).in_(held_ids)))).all()
    mine = [event for event in approved if event.integration_id == integration_id]
    assert [(e.actor, e.detail["accounts"]) for e in mine] == [("alice", 2)]
    assert {(r.status, r.approved_by) for r in rows} == {(RemovalStatus.approved, "alice")}
    assert await guard.approve(database, integration_id, actor="alice") == []


async def test_an_approval_given_while_the_job_runs_its_grants_is_not_lost(
    database: Database,
) -> None:
    """Held, then approved before the job parks: park answers None, the job goes on."""
    people = await guarded_integration(database, 1, limit=0)
    claim = await claimed(database, people[0])
    assert claim.job is not None and claim.lease is not None
    reason = await guard.admit(database, claim.job, REVOKE)
    assert reason is not None
    assert await guard.approve(database, people[0].integration_id, actor="bob") == []
    assert await guard.park(database, claim.lease, people[0].integration_id, reason) is None
    assert (await reload(database, claim.job.id)).status == JobStatus.running


async def test_a_foreseen_group_change_is_held_whole(database: Database) -> None:
    """Six members' jobs are foreseen when the group job fans out, limit five: the very first
    one to run is held, so nothing of the change goes through before an operator looks."""
    people = await guarded_integration(database, 6, limit=5)
    jobs = [await pending_job(database, person) for person in people]
    async with database.session() as session:
        for job in jobs:
            await guard.foresee(session, job, REVOKE)
        await session.commit()
    first = await state.claim(database, jobs[0].id, jobs[0].attempt, "w1", lease_s=LEASE_S)
    assert first.job is not None
    assert await guard.admit(database, first.job, REVOKE) is not None
    assert (await view(database, people[0].integration_id)).accounts_last_hour == 6


async def test_a_job_that_removes_nothing_after_all_stops_counting(database: Database) -> None:
    """A foreseen job that plans no removal when it runs is dropped from the hour."""
    people = await guarded_integration(database, 2, limit=1)
    jobs = [await pending_job(database, person) for person in people]
    async with database.session() as session:
        await guard.foresee(session, jobs[0], REVOKE)
        await session.commit()
    assert (await view(database, people[0].integration_id)).accounts_last_hour == 1
    await guard.forget(database, jobs[0].id)
    assert (await view(database, people[0].integration_id)).accounts_last_hour == 0
    other = await state.claim(database, jobs[1].id, jobs[1].attempt, "w2", lease_s=LEASE_S)
    assert other.job is not None
    assert await guard.admit(database, other.job, REVOKE) is None


async def test_a_cancelled_held_job_stops_counting(database: Database) -> None:
    """An operator who cancels a held job decided about it: it no longer fills the hour."""
    people = await guarded_integration(database, 3, limit=1)
    integration_id = people[0].integration_id
    claims = [await claimed(database, person) for person in people[:2]]
    for claim in claims:
        await admit_and_park(database, claim)
    held = claims[1].job
    assert held is not None
    assert (await view(database, integration_id)).accounts_last_hour == 2
    await state.cancel(database, held.id, actor="frank")
    assert (await view(database, integration_id)).accounts_last_hour == 1


async def test_the_hour_slides(database: Database) -> None:
    """An account admitted more than an hour ago no longer counts."""
    people = await guarded_integration(database, 2, limit=1)
    first = await claimed(database, people[0])
    assert first.job is not None
    assert await guard.admit(database, first.job, REVOKE) is None
    async with database.session() as session:
        await session.exec(
            update(Removal)
            .where(Removal.job_id == first.job.id)
            .values(counted_at=utcnow() - timedelta(hours=1, minutes=1))
        )
        await session.commit()
    second = await claimed(database, people[1])
    assert second.job is not None
    assert await guard.admit(database, second.job, REVOKE) is None


async def test_only_approval_releases_held_removals(database: Database) -> None:
    """The breaker's release queues a held job with the others, but its removals stay held:
    asked again, the guard holds it again; a change of the identity wakes it the same way."""
    people = await guarded_integration(database, 2, limit=1)
    integration_id = people[0].integration_id
    claims = [await claimed(database, person) for person in people]
    for claim in claims:
        await admit_and_park(database, claim)
    held = claims[1].job
    assert held is not None
    released = await resume(database, integration_id, actor="carol")
    assert [job.id for job in released] == [held.id]
    again = await state.claim(database, held.id, held.attempt, "w-again", lease_s=LEASE_S)
    assert again.job is not None and again.lease is not None
    assert await admit_and_park(database, again) is not None
    async with database.session() as session:
        job = await session.get(Job, held.id)
        assert job is not None
        await guard.wake(session, job)
        await session.commit()
    assert (await reload(database, held.id)).status == JobStatus.queued
    assert [h.job_id for h in (await view(database, integration_id)).held] == []
    woken = await state.claim(database, held.id, held.attempt, "w-woken", lease_s=LEASE_S)
    assert await admit_and_park(database, woken) is not None
    assert [h.job_id for h in (await view(database, integration_id)).held] == [held.id]


async def test_the_first_hold_alerts_the_webhook_once(database: Database, tmp_path: Path) -> None:
    """Holding three jobs queues one `integration.removals_held` alert; after an approval the
    hour starts again, and the next hold alerts again."""
    settings = Settings(data_dir=tmp_path / "var")
    settings.ensure_data_dir()
    people = await guarded_integration(database, 6, limit=1)
    integration_id = people[0].integration_id
    async with database.session() as session:
        await set_webhook(
            session,
            Vault.from_path(settings.vault_key_path),
            integration_id,
            "http://x/",
            actor="t",
        )
    for person in people[:4]:
        await admit_and_park(database, await claimed(database, person))
    async with database.reader() as session:
        alerts = list(await recent_deliveries(session, integration_id))
    assert [a.event for a in alerts] == [guard.HELD]
    detail = alerts[0].payload["guard"]
    assert detail["accounts_last_hour"] == 2 and detail["max_removals_per_hour"] == 1
    assert detail["identity"] == people[1].user_name
    assert detail["approve"] == f"usher approve --integration {integration_id}"
    await guard.approve(database, integration_id, actor="dave")
    assert await admit_and_park(database, await claimed(database, people[4])) is None
    assert await admit_and_park(database, await claimed(database, people[5])) is not None
    async with database.reader() as session:
        events = [d.event for d in await recent_deliveries(session, integration_id)]
    assert events == [guard.HELD] * 2


async def test_set_guard_is_audited_and_refuses_a_negative_limit(database: Database) -> None:
    """The limit is per integration, 0 or more, and each change is an audit event."""
    people = await guarded_integration(database, 1, limit=GUARD_MAX_REMOVALS)
    integration_id = people[0].integration_id
    async with database.session() as session:
        changed = await guard.set_guard(session, integration_id, 7, actor="erin")
        assert changed.max_removals_per_hour == 7
        try:
            await guard.set_guard(session, integration_id, -1, actor="erin")
        except IntegrationError as error:
            assert "0 or more" in str(error)
        else:
            raise AssertionError("a negative limit was accepted")
        event = (
            await session.exec(
                select(AuditEvent).where(
                    AuditEvent.integration_id == integration_id,
                    AuditEvent.event == guard.GUARD_CHANGED,
                )
            )
        ).one()
    assert event.actor == "erin" and event.detail == {
        "max_removals_per_hour": 7,
        "before": GUARD_MAX_REMOVALS,
    }


def test_the_cli_sets_shows_and_approves(tmp_path: Path) -> None:
    """`integrations set-guard`, `integrations list`, `held` and `approve` on a data dir."""
    settings = Settings(data_dir=tmp_path / "var")
    settings.ensure_data_dir()

    async def two_held() -> str:
        """Make an integration with a limit of 0 and hold two jobs' removals."""
        database = Database.from_settings(settings)
        await database.migrate()
        try:
            people = await guarded_integration(database, 2, limit=0)
            for person in people:
                await admit_and_park(database, await claimed(database, person))
            return people[0].integration_id
        finally:
            await database.dispose()

    integration_id = run_apart(two_held)
    runner = CliRunner()
    data_dir = ["--data-dir", str(settings.data_dir)]
    env = {"USHER_REDIS_URL": ""}
    set_to = runner.invoke(
        app, ["integrations", "set-guard", integration_id, "--max-removals", "4", *data_dir]
    )
    assert set_to.exit_code == 0, set_to.output
    assert "at most 4 accounts" in set_to.output
    refused = runner.invoke(
        app, ["integrations", "set-guard", integration_id, "--max-removals", "-1", *data_dir]
    )
    assert refused.exit_code == 2
    listed = runner.invoke(app, ["integrations", "list", *data_dir])
    assert f"{integration_id}" in listed.output and "guard 4/h" in listed.output
    held = runner.invoke(app, ["held", "--integration", integration_id, *data_dir])
    assert held.exit_code == 0, held.output
    assert "held for approval (2;" in held.output
    assert held.output.count("revoke_entitlement editor") == 2
    approved = runner.invoke(app, ["approve", "--integration", integration_id, *data_dir], env=env)
    assert approved.exit_code == 0, approved.output
    assert "2 held job(s) queued" in approved.output
    after = runner.invoke(app, ["held", "--integration", integration_id, *data_dir])
    assert "nothing held" in after.output
