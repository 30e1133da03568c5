"""Inventories on both databases: the import, orphans, adoption, the daily run, remediation."""

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from engine.apps.integrations import create_integration, set_ownership, set_secrets
from engine.apps.ownership import Ownership
from engine.apps.template import AppTemplate, load_app
from engine.jobs import guard, state
from engine.jobs.drift import DriftFindings
from engine.jobs.inventory import (
    IMPORT_SKIPPED,
    IMPORT_WAIT,
    InventoryUnavailable,
    adopt_orphan,
    queue_inventory,
    record_inventory,
    schedule_due,
    skip_import,
    wait_for_import,
)
from engine.jobs.preview import plan_integration, render_plan
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import (
    AppAccount,
    AppOrphan,
    AuditEvent,
    DriftReport,
    Identity,
    Integration,
    Job,
    JobKind,
    JobStatus,
    Onboarding,
    utcnow,
)
from engine.storage.vault import Vault
from tests.harness import ROOT
from tests.jobs.support import LEASE_S, reload

EVERY_S = 3600.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Return settings whose flows are the shipped ones, the vault in a fresh data dir."""
    return Settings(data_dir=tmp_path, flows_dir=ROOT / "flows", inventory_every_s=EVERY_S)


@pytest.fixture
def acme() -> AppTemplate:
    """Return the Acme template."""
    return load_app(ROOT / "flows", "acme")


async def connect(database: Database, settings: Settings, *, import_accounts: bool) -> str:
    """Create an Acme integration with its secrets set; return its id."""
    async with database.session() as session:
        integration, _ = await create_integration(
            session,
            settings,
            app="acme",
            base_url="http://127.0.0.1:9",
            import_accounts=import_accounts,
        )
        vault = Vault.from_path(settings.vault_key_path)
        secrets = {"admin_username": "usher-bot", "admin_password": "pw", "totp_seed": "A" * 32}
        await set_secrets(session, settings, vault, integration.id, secrets)
        return integration.id


async def person(
    database: Database, integration_id: str, email: str, entitlements: tuple[str, ...] = ()
) -> Identity:
    """Store an identity as a SCIM POST would."""
    async with database.session() as session:
        identity = Identity(
            integration_id=integration_id,
            user_name=email,
            user_name_key=email.casefold(),
            resource={
                "userName": email,
                "active": True,
                "emails": [{"value": email, "primary": True}],
                "entitlements": [{"value": v} for v in entitlements],
            },
        )
        session.add(identity)
        await session.commit()
        return identity


async def running(database: Database, job: Job) -> state.Lease:
    """Claim a pending job for a worker; return its lease."""
    claimed = await state.claim(database, job.id, job.attempt, "w1", lease_s=LEASE_S)
    assert claimed.lease is not None
    return claimed.lease


async def identity_job(database: Database, identity: Identity) -> Job:
    """Queue an identity's job as a SCIM change would."""
    async with database.session() as session:
        job = await state.ensure_pending(session, identity.integration_id, identity_id=identity.id)
        await session.commit()
        return job


async def inventory_job(database: Database, integration_id: str) -> Job:
    """Queue an integration's inventory and claim it."""
    async with database.session() as session:
        job = await state.ensure_inventory(session, integration_id, actor="test")
        await session.commit()
    await running(database, job)
    return job


def row(key: str, email: str, roles: str = "", plan: str = "Free") -> dict[str, str]:
    """Return one row as Acme's list_users reads it."""
    return {"key": key, "email": email, "plan": plan, "roles": roles, "status": "Active"}


async def account_of(database: Database, identity: Identity) -> AppAccount:
    """Read an identity's account."""
    async with database.session() as session:
        query = select(AppAccount).where(AppAccount.identity_id == identity.id)
        account = (await session.exec(query)).first()
        assert account is not None
        return account


async def test_an_import_records_the_accounts_and_releases_the_jobs_that_waited(
    database: Database, settings: Settings, acme: AppTemplate
) -> None:
    """Ann waited for the import; it finds her with her roles, keeps Eve as an orphan and
    the protected VIP apart, and makes the integration plan. A job waiting for the
    breaker stays waiting."""
    integration_id = await connect(database, settings, import_accounts=True)
    ann = await person(database, integration_id, "Ann@Example.com", ("editor",))
    carol = await person(database, integration_id, "carol@example.com")
    ann_job = await identity_job(database, ann)
    assert await wait_for_import(database, await running(database, ann_job)) == JobStatus.waiting
    assert (await reload(database, ann_job.id)).error == IMPORT_WAIT
    carol_job = await identity_job(database, carol)
    await state.wait(database, await running(database, carol_job), "sign-in paused")

    job = await inventory_job(database, integration_id)
    rows = [
        row("u1", "ann@example.com", roles="Billing, Editor", plan="Pro"),
        row("u2", "eve@example.com", roles="Admin"),
        row("u3", "vip@example.com"),
    ]
    ownership = Ownership(protected=frozenset({"vip@example.com"}))
    recorded = await record_inventory(database, job, acme, ownership, rows)

    assert recorded.imported and [j.id for j in recorded.released] == [ann_job.id]
    assert (await reload(database, ann_job.id)).status == JobStatus.queued
    carol_now = await reload(database, carol_job.id)
    assert (carol_now.status, carol_now.error) == (JobStatus.waiting, "sign-in paused")
    async with database.session() as session:
        integration = await session.get(Integration, integration_id)
        assert integration is not None and integration.onboarding == Onboarding.ready
        report = await session.get(DriftReport, recorded.report_id)
        orphans = (
            await session.exec(
                select(AppOrphan)
                .where(AppOrphan.integration_id == integration_id)
                .order_by(col(AppOrphan.app_key))
            )
        ).all()
    account = await account_of(database, ann)
    assert (account.exists, account.app_key, account.active) == (True, "u1", None)
    assert account.observed_at is not None and account.observed_exists is True
    assert account.observed_entitlements == ["billing", "editor", "plan-pro"]
    assert account.entitlements == [], "found before Usher: nothing of it is Usher's"
    assert [(o.app_key, o.label, o.protected) for o in orphans] == [
        ("u2", "eve@example.com", False),
        ("u3", "vip@example.com", True),
    ]
    assert report is not None and report.imported
    assert (report.accounts, report.orphans, report.protected) == (3, 1, 1)
    findings = DriftFindings.model_validate(report.report)
    assert (findings.matched, findings.adopted) == (1, 1)
    assert [(d.user_name, d.unexpected) for d in findings.differing] == [
        ("Ann@Example.com", ["billing"])
    ]
    assert [m.user_name for m in findings.missing] == ["carol@example.com"]
    assert not findings.remediation.ran and "changes nothing" in findings.remediation.why


async def test_a_job_of_an_integration_that_plans_does_not_wait(
    database: Database, settings: Settings
) -> None:
    """An integration connected without an import plans at once: its jobs never wait."""
    integration_id = await connect(database, settings, import_accounts=False)
    ann = await person(database, integration_id, "ann@example.com")
    lease = await running(database, await identity_job(database, ann))
    assert await wait_for_import(database, lease) is None
    assert (await reload(database, lease.job_id)).status == JobStatus.running


async def test_a_job_adopts_the_orphan_its_identity_matches(
    database: Database, settings: Settings, acme: AppTemplate
) -> None:
    """Eve arrives after the import: her job takes the orphan as found, so no invite."""
    integration_id = await connect(database, settings, import_accounts=True)
    job = await inventory_job(database, integration_id)
    await record_inventory(
        database, job, acme, Ownership(), [row("u2", "EVE@example.com", "Admin")]
    )
    eve = await person(database, integration_id, "eve@example.com")
    async with database.session() as session:
        account = AppAccount(integration_id=integration_id, identity_id=eve.id)
        assert await adopt_orphan(session, acme, eve, account)
        await session.commit()
        left = (
            await session.exec(select(AppOrphan).where(AppOrphan.integration_id == integration_id))
        ).all()
    stored = await account_of(database, eve)
    assert (stored.exists, stored.app_key, stored.observed_entitlements) == (
        True,
        "u2",
        ["admin", "plan-free"],
    )
    assert left == []


async def test_the_daily_inventory_is_queued_once_however_many_workers_look(
    database: Database, settings: Settings
) -> None:
    """Three workers' passes at once queue one run; the next is due a day (here an hour)
    later; an integration lacking its secrets is never queued."""
    integration_id = await connect(database, settings, import_accounts=False)
    async with database.session() as session:
        bare, _ = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
        await session.exec(
            update(Integration)
            .where(col(Integration.id).in_([integration_id, bare.id]))
            .values(next_inventory_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    vault = Vault.from_path(settings.vault_key_path)
    passes = await asyncio.gather(*(schedule_due(database, settings, vault) for _ in range(3)))
    queued = [
        job for jobs in passes for job in jobs if job.integration_id in (integration_id, bare.id)
    ]
    assert [(j.integration_id, j.kind) for j in queued] == [(integration_id, JobKind.inventory)]
    again = await schedule_due(database, settings, vault)
    assert [j for j in again if j.integration_id == integration_id] == []
    async with database.session() as session:
        integration = await session.get(Integration, integration_id)
        assert integration is not None and integration.next_inventory_at is not None
        due_in = (integration.next_inventory_at - utcnow()).total_seconds()
        assert EVERY_S - 60 < due_in <= EVERY_S
        jobs = (await session.exec(select(Job).where(Job.integration_id == bare.id))).all()
        assert jobs == []


async def test_a_remediating_inventory_queues_what_differs_and_names_the_orphans(
    database: Database, settings: Settings, acme: AppTemplate
) -> None:
    """Authoritative and opted in: Ann's Editor, removed in the app, is forgotten and her
    job queued to grant it again; Eve (orphan) is to be deactivated; the VIP is not."""
    integration_id = await connect(database, settings, import_accounts=False)
    async with database.session() as session:
        await set_ownership(
            session, integration_id, authoritative=True, remediate=True, actor="test"
        )
    ann = await person(database, integration_id, "ann@example.com", ("editor",))
    async with database.session() as session:
        session.add(
            AppAccount(
                integration_id=integration_id,
                identity_id=ann.id,
                app_key="u1",
                exists=True,
                active=True,
                entitlements=["editor"],
            )
        )
        await session.commit()
    job = await inventory_job(database, integration_id)
    rows = [row("u1", "ann@example.com"), row("u2", "eve@example.com"), row("u3", "vip@x.test")]
    ownership = Ownership(protected=frozenset({"vip@x.test"}), service_account="usher-bot")
    recorded = await record_inventory(database, job, acme, ownership, rows)

    assert not recorded.imported and recorded.deactivate == ["u2"]
    (queued,) = recorded.queued
    assert (queued.identity_id, queued.status) == (ann.id, JobStatus.queued)
    account = await account_of(database, ann)
    assert account.entitlements == [], "what the app no longer shows is Usher's no more"
    async with database.session() as session:
        report = await session.get(DriftReport, recorded.report_id)
    assert report is not None
    findings = DriftFindings.model_validate(report.report)
    assert findings.remediation.ran and findings.remediation.queued == ["ann@example.com"]
    assert [d.not_shown for d in findings.differing] == [["editor"]]
    assert [p.name for p in findings.protected] == ["vip@x.test"]


async def test_remediation_deactivates_orphans_only_within_the_guards_hour(
    database: Database, settings: Settings, acme: AppTemplate
) -> None:
    """With room for one account to lose access this hour, one of three orphans is to be
    deactivated and the other two stay active, listed as held, for a later run."""
    integration_id = await connect(database, settings, import_accounts=False)
    async with database.session() as session:
        await set_ownership(
            session, integration_id, authoritative=True, remediate=True, actor="test"
        )
        await guard.set_guard(session, integration_id, 1, actor="test")
    job = await inventory_job(database, integration_id)
    rows = [row(f"u{n}", f"orphan{n}@example.com") for n in range(3)]
    ownership = Ownership(protected=frozenset(), service_account="usher-bot")
    recorded = await record_inventory(database, job, acme, ownership, rows)

    assert recorded.deactivate == ["u0"]
    async with database.session() as session:
        report = await session.get(DriftReport, recorded.report_id)
    assert report is not None
    findings = DriftFindings.model_validate(report.report)
    assert findings.remediation.deactivate == ["u0"]
    assert findings.remediation.held == ["u1", "u2"]


async def test_an_import_still_running_is_not_queued_again_when_it_falls_due(
    database: Database, settings: Settings
) -> None:
    """A long import is still running when its next try falls due: the timer queues
    nothing behind it; once it ended, the next due pass queues the next run."""
    integration_id = await connect(database, settings, import_accounts=False)
    vault = Vault.from_path(settings.vault_key_path)
    async with database.session() as session:
        first = await state.ensure_inventory(session, integration_id, actor="a")
        await session.commit()
    lease = await running(database, first)

    async def due_now() -> list[Job]:
        async with database.session() as session:
            await session.exec(
                update(Integration)
                .where(col(Integration.id) == integration_id)
                .values(next_inventory_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        jobs = await schedule_due(database, settings, vault)
        return [job for job in jobs if job.integration_id == integration_id]

    assert await due_now() == []
    await state.finish(database, lease, JobStatus.succeeded, None)
    [next_run] = await due_now()
    assert next_run.kind == JobKind.inventory and next_run.id != first.id


async def test_an_inventory_is_single_flight_per_integration(
    database: Database, settings: Settings
) -> None:
    """A second request while one is pending gets the same job; a retried one is its own."""
    integration_id = await connect(database, settings, import_accounts=False)
    async with database.session() as session:
        first = await state.ensure_inventory(session, integration_id, actor="a")
        second = await state.ensure_inventory(session, integration_id, actor="b")
        await session.commit()
    assert first.id == second.id and first.kind == JobKind.inventory
    lease = await running(database, first)
    async with database.session() as session:
        pending = await state.ensure_inventory(session, integration_id, actor="c")
        await session.commit()
    assert pending.id != first.id
    status = await state.retry_later(database, lease, "the app answered 500", max_attempts=3)
    assert status == JobStatus.superseded
    assert (await reload(database, first.id)).superseded_by == pending.id


async def test_the_plan_shows_what_an_import_changes(
    database: Database, settings: Settings, acme: AppTemplate
) -> None:
    """Before the import, usher plan says nothing plans yet; after it, Eve's plan adopts her
    account as her job would: no create, her Admin kept and noted, not revoked. Zed, whom
    the app does not hold, is still to be created."""
    integration_id = await connect(database, settings, import_accounts=True)
    await person(database, integration_id, "zed@example.com")
    async with database.session() as session:
        before = await plan_integration(session, settings, integration_id)
    assert before.onboarding == Onboarding.importing
    assert render_plan(before).splitlines()[1].startswith("importing    no job plans until")

    job = await inventory_job(database, integration_id)
    rows = [row("u2", "EVE@example.com", "Admin")]
    await record_inventory(database, job, acme, Ownership(), rows)
    await person(database, integration_id, "eve@example.com")
    async with database.session() as session:
        after = await plan_integration(session, settings, integration_id)
    assert after.onboarding == Onboarding.ready
    eve_plan, zed_plan = after.identities
    assert [a.name for a in eve_plan.actions] == ["update_user"]
    assert any("keeps admin" in note for note in eve_plan.notes), eve_plan.notes
    assert [a.name for a in zed_plan.actions][:1] == ["create_user"]


async def test_skipping_an_import_releases_only_the_jobs_that_waited_for_it(
    database: Database, settings: Settings
) -> None:
    """An operator's skip-import: the job that waited for the import is queued, the one
    waiting for the breaker is not; audited; a second skip is refused."""
    integration_id = await connect(database, settings, import_accounts=True)
    ann = await person(database, integration_id, "ann@example.com")
    bob = await person(database, integration_id, "bob@example.com")
    ann_job = await identity_job(database, ann)
    assert await wait_for_import(database, await running(database, ann_job)) == JobStatus.waiting
    bob_job = await identity_job(database, bob)
    await state.wait(database, await running(database, bob_job), "sign-in paused")

    released = await skip_import(database, integration_id, actor="ops")

    assert [j.id for j in released] == [ann_job.id]
    assert (await reload(database, bob_job.id)).status == JobStatus.waiting
    async with database.session() as session:
        integration = await session.get(Integration, integration_id)
        assert integration is not None and integration.onboarding == Onboarding.ready
        (event,) = (
            await session.exec(
                select(AuditEvent).where(
                    AuditEvent.integration_id == integration_id,
                    AuditEvent.event == IMPORT_SKIPPED,
                )
            )
        ).all()
        assert event.actor == "ops"
    with pytest.raises(InventoryUnavailable, match="is not importing"):
        await skip_import(database, integration_id, actor="ops")


async def test_an_inventory_is_refused_while_the_app_cannot_be_read(
    database: Database, settings: Settings
) -> None:
    """Secrets missing, or the sign-in paused by the breaker: refused, saying what to do."""
    vault = Vault.from_path(settings.vault_key_path)
    async with database.session() as session:
        bare, _ = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
        with pytest.raises(InventoryUnavailable, match="lacks secrets admin_username"):
            await queue_inventory(session, settings, vault, bare.id, actor="ops")
    integration_id = await connect(database, settings, import_accounts=False)
    async with database.session() as session:
        await session.exec(
            update(Integration).where(Integration.id == integration_id).values(breaker="open")
        )
        await session.commit()
        with pytest.raises(InventoryUnavailable, match="integrations resume"):
            await queue_inventory(session, settings, vault, integration_id, actor="ops")
