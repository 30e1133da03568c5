"""Inventories: read an app's accounts, record what Usher observed, report the drift.

An inventory is a job of its own kind (no identity, no group), one pending and one running
per integration. It runs `list_users` like any action, with sign-in, evidence and
retries, then hands its rows here: each account is matched to an identity (by the app's
key Usher recorded, else by the template's rule), what the app shows is recorded on the
identity's account (`observed_*`), accounts no identity owns are kept as orphans
(`app_orphan`), and a drift report is stored. A new integration starts `importing`: its
jobs wait until the first inventory has recorded the app's existing accounts, so no one
is invited twice and nothing they hold is revoked. Each worker's maintenance queues the
daily inventory of every integration by a compare-and-set on `next_inventory_at`.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import load_groups
from engine.apps.integrations import IntegrationError, get_integration, lacking_secrets
from engine.apps.ownership import Ownership
from engine.apps.template import AppError, AppTemplate, load_app
from engine.constants import AUDIT_SYSTEM_ACTOR, DRIFT_DEACTIVATE_MAX, IMPORT_RETRY_S
from engine.jobs import guard, state
from engine.jobs.breaker import BreakerState
from engine.jobs.drift import (
    DriftFindings,
    MissingEntry,
    OrphanEntry,
    ProtectedEntry,
    Remediation,
    SeenAccount,
    account_drift,
    adopt,
    identity_match_key,
    missing_reason,
    protects_account,
    refresh,
    remedy,
    render_findings,
    seen_accounts,
)
from engine.planner import desired_state
from engine.settings import Settings
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import (
    AppAccount,
    AppOrphan,
    DriftReport,
    Identity,
    Integration,
    Job,
    JobStatus,
    Onboarding,
    inventories_of,
    utcnow,
)
from engine.storage.vault import Vault

log = logging.getLogger(__name__)

IMPORT_WAIT = "waiting for the integration's import of the accounts already in the app"
"""Why a job of an importing integration waits; the import's end releases exactly these."""
IMPORTED = "integration.imported"
"""The audit event of an integration whose import ended: it plans from now on."""
IMPORT_SKIPPED = "integration.import_skipped"
"""The audit event of an operator making an importing integration plan without its import."""


class InventoryUnavailable(IntegrationError):
    """An integration whose accounts cannot be read now: no inventory, or secrets missing."""


async def wait_for_import(db: Database, lease: state.Lease) -> str | None:
    """Hold a job of an importing integration until the import ends; None if not importing.

    The integration's row is written first, in the move's transaction, so the import's end
    (which writes it too, then releases the waiting jobs) comes wholly before or wholly
    after this move: no job is left waiting for an import that has ended.
    """

    async def importing(session: AsyncSession) -> bool:
        """Tell whether the job's integration still imports, holding its row until commit."""
        job = await session.get(Job, lease.job_id)
        if job is None:
            return False
        still = await session.exec(
            update(Integration)
            .where(
                Integration.id == job.integration_id,
                Integration.onboarding == Onboarding.importing,
            )
            .values(onboarding=Onboarding.importing)
        )
        return still.rowcount == 1

    return await state.wait_while(db, lease, IMPORT_WAIT, importing)


async def queue_inventory(
    session: AsyncSession, settings: Settings, vault: Vault, integration_id: str, *, actor: str
) -> Job:
    """Queue an inventory of an integration now (or return the one pending); committed.

    Raises InventoryUnavailable when its app cannot list its accounts, secrets are missing
    or its sign-in is paused; IntegrationError when there is no such integration.
    """
    integration = await get_integration(session, integration_id)
    template = load_app(settings.flows_dir, integration.app)
    if not template.can_inventory:
        raise InventoryUnavailable(
            f"app {template.name} cannot list its accounts: its template declares no"
            " inventory (list_users and how to read it, flows/README.md)"
        )
    held = await vault.names_of(session, integration.id)
    missing = [s.name for s in template.secrets if s.name not in held]
    if missing:
        raise InventoryUnavailable(lacking_secrets(integration.id, missing))
    if integration.breaker != BreakerState.closed:
        raise InventoryUnavailable(
            f"sign-in to integration {integration.id} is paused (breaker {integration.breaker}):"
            f" fix the secret and run `usher integrations resume {integration.id}`"
        )
    job = await state.ensure_inventory(session, integration.id, actor=actor)
    await session.commit()
    return job


def _due(now: datetime):  # type: ignore[no-untyped-def]
    """Return the condition of an integration whose inventory is due at `now`."""
    return or_(col(Integration.next_inventory_at).is_(None), Integration.next_inventory_at <= now)


async def _inventoried(session: AsyncSession, settings: Settings, vault: Vault) -> list[str]:
    """Return the integrations whose inventory is due, that can list their accounts now."""
    query = select(Integration).where(_due(utcnow()), Integration.breaker == BreakerState.closed)
    due = []
    for integration in (await session.exec(query)).all():
        try:
            template = load_app(settings.flows_dir, integration.app)
        except AppError:
            continue
        held = await vault.names_of(session, integration.id)
        if template.can_inventory and all(s.name in held for s in template.secrets):
            due.append(integration.id)
    return due


async def _claim_due(db: Database, integration_id: str, every_s: float) -> Job | None:
    """Take one integration's due inventory for this worker and queue it; None if another
    worker took it first (the compare-and-set on `next_inventory_at` lets one through), or
    while one still runs: a long import is not queued again behind itself."""
    now = utcnow()
    async with db.session() as session:
        integration = await session.get(Integration, integration_id)
        if integration is None or await _inventory_running(session, integration_id):
            return None
        importing = integration.onboarding == Onboarding.importing
        later = now + timedelta(seconds=IMPORT_RETRY_S if importing else every_s)
        claimed = await session.exec(
            update(Integration)
            .where(Integration.id == integration_id, _due(now))
            .values(next_inventory_at=later)
        )
        if claimed.rowcount != 1:
            return None
        job = await state.ensure_inventory(session, integration_id, actor=AUDIT_SYSTEM_ACTOR)
        await session.commit()
        return job


async def _inventory_running(session: AsyncSession, integration_id: str) -> bool:
    """Tell whether an inventory of the integration is running now."""
    query = select(Job.id).where(*inventories_of(integration_id), Job.status == JobStatus.running)
    return (await session.exec(query.limit(1))).first() is not None


async def schedule_due(db: Database, settings: Settings, vault: Vault) -> list[Job]:
    """Queue every due inventory (the daily run, or an import not done yet); return the jobs.

    Every worker's maintenance calls this; the database lets one worker queue each.
    """
    async with db.session() as session:
        due = await _inventoried(session, settings, vault)
    jobs = []
    for integration_id in due:
        job = await _claim_due(db, integration_id, settings.inventory_every_s)
        if job is not None:
            jobs.append(job)
    return jobs


async def adopt_orphan(
    session: AsyncSession, template: AppTemplate, identity: Identity, account: AppAccount
) -> bool:
    """Give an identity without an account the orphan its matching value names, as found.

    Called by a job before it plans, in its own transaction; the caller commits.
    """
    key = identity_match_key(identity, template)
    if key is None:
        return False
    orphan = (
        await session.exec(
            select(AppOrphan).where(
                AppOrphan.integration_id == identity.integration_id, AppOrphan.match_key == key
            )
        )
    ).first()
    if orphan is None:
        return False
    adopt(account, orphan.app_key, orphan.active, orphan.entitlements, utcnow())
    account.updated_at = utcnow()
    session.add(account)
    await session.delete(orphan)
    return True


@dataclass
class Recorded:
    """What recording an inventory left for its job to do."""

    report_id: str
    imported: bool
    queued: list[Job] = field(default_factory=list)
    released: list[Job] = field(default_factory=list)
    deactivate: list[str] = field(default_factory=list)


@dataclass
class _Directory:
    """An integration's identities and accounts, indexed the ways an inventory matches."""

    identities: dict[str, Identity]
    accounts: dict[str, AppAccount]
    by_key: dict[str, str]
    by_match: dict[str, list[str]]

    def owner(self, seen: SeenAccount, taken: set[str]) -> str | None:
        """Return the identity owning an account: by the app's key, else by the rule."""
        owner = self.by_key.get(seen.key)
        if owner is not None and owner not in taken:
            return owner
        for candidate in self.by_match.get(seen.match_key or "", []):
            account = self.accounts.get(candidate)
            known_elsewhere = account is not None and account.app_key not in (None, seen.key)
            if candidate not in taken and not known_elsewhere:
                return candidate
        return None


async def _directory(
    session: AsyncSession, integration_id: str, template: AppTemplate
) -> _Directory:
    """Load an integration's identities and accounts; live identities match first."""
    identities = (
        await session.exec(
            select(Identity)
            .where(Identity.integration_id == integration_id)
            .order_by(col(Identity.deleted_at).is_not(None), col(Identity.created_at))
        )
    ).all()
    accounts = (
        await session.exec(select(AppAccount).where(AppAccount.integration_id == integration_id))
    ).all()
    by_match: dict[str, list[str]] = {}
    for identity in identities:
        key = identity_match_key(identity, template)
        if key is not None:
            by_match.setdefault(key, []).append(identity.id)
    return _Directory(
        identities={i.id: i for i in identities},
        accounts={a.identity_id: a for a in accounts},
        by_key={a.app_key: a.identity_id for a in accounts if a.app_key},
        by_match=by_match,
    )


def _remediation(integration: Integration, importing: bool) -> Remediation:
    """Say whether this run remedies the drift it finds, and why not when it does not."""
    if importing:
        return Remediation(ran=False, why="the import records what it finds and changes nothing")
    if not integration.authoritative:
        return Remediation(
            ran=False,
            why="reported only: the integration is not authoritative"
            " (usher integrations set-authoritative)",
        )
    if not integration.remediate:
        return Remediation(
            ran=False,
            why="reported only: remediation is off (usher integrations set-remediate ID on)",
        )
    return Remediation(ran=True, why="authoritative and opted in")


async def _keep_orphans(
    session: AsyncSession, integration_id: str, orphans: list[tuple[SeenAccount, bool]]
) -> dict[str, AppOrphan]:
    """Make the integration's orphans the ones this run found; return them by key."""
    kept = {
        o.app_key: o
        for o in (
            await session.exec(select(AppOrphan).where(AppOrphan.integration_id == integration_id))
        ).all()
    }
    now = utcnow()
    current: dict[str, AppOrphan] = {}
    for seen, protected in orphans:
        row = kept.pop(seen.key, None) or AppOrphan(
            integration_id=integration_id, app_key=seen.key, label=seen.label, first_seen_at=now
        )
        row.match_key, row.label, row.active = seen.match_key, seen.label, seen.active
        row.entitlements, row.protected, row.seen_at = list(seen.entitlements), protected, now
        session.add(row)
        current[seen.key] = row
    for gone in kept.values():
        await session.delete(gone)
    return current


async def record_inventory(
    db: Database,
    job: Job,
    template: AppTemplate,
    ownership: Ownership,
    rows: list[dict[str, str]],
) -> Recorded:
    """Match the app's accounts, record what Usher observed, keep the orphans, store the
    report, remedy where opted in, and end an import; return what the job does next."""
    seen = seen_accounts(rows, template)
    now = utcnow()
    async with db.session() as session:
        integration = await session.get(Integration, job.integration_id)
        assert integration is not None
        importing = integration.onboarding == Onboarding.importing
        directory = await _directory(session, integration.id, template)
        groups = await load_groups(session, integration.id)
        findings = DriftFindings(remediation=_remediation(integration, importing))
        matched: dict[str, SeenAccount] = {}
        orphans: list[tuple[SeenAccount, bool]] = []
        for account_seen in seen:
            owner = directory.owner(account_seen, set(matched))
            if owner is not None:
                matched[owner] = account_seen
                continue
            protected = protects_account(account_seen, ownership)
            orphans.append((account_seen, protected))
            if protected:
                findings.protected.append(
                    ProtectedEntry(
                        name=account_seen.label, identity_id=None, key=account_seen.key, listed=True
                    )
                )
            else:
                findings.orphans.append(
                    OrphanEntry(
                        key=account_seen.key,
                        label=account_seen.label,
                        active=account_seen.active,
                        entitlements=list(account_seen.entitlements),
                    )
                )
        findings.matched = len(matched)
        remedied: list[Identity] = []
        for identity in directory.identities.values():
            account = directory.accounts.get(identity.id)
            shown = matched.get(identity.id)
            protected = ownership.protects(identity, template) is not None
            if shown is not None:
                if account is None or not account.exists:
                    account = account or AppAccount(
                        integration_id=integration.id, identity_id=identity.id
                    )
                    adopt(account, shown.key, shown.active, shown.entitlements, now)
                    findings.adopted += 1
                refresh(account, shown, now)
                session.add(account)
            elif account is not None:
                account.observed_exists, account.inventoried_at = False, now
                session.add(account)
            if protected:
                findings.protected.append(
                    ProtectedEntry(
                        name=identity.user_name,
                        identity_id=identity.id,
                        key=shown.key if shown else None,
                        listed=shown is not None,
                    )
                )
                continue
            desired = desired_state(identity, template, groups.of(identity.id))
            if shown is None:
                reason = missing_reason(account, desired)
                if reason is None:
                    continue
                entry_missing = MissingEntry(
                    identity_id=identity.id, user_name=identity.user_name, reason=reason
                )
                findings.missing.append(entry_missing)
                if findings.remediation.ran and account is not None:
                    remedy(account, None, gone=account.exists)
                    session.add(account)
                remedied.append(identity)
                continue
            assert account is not None
            entry = account_drift(identity, account, shown, template, desired)
            if entry is not None:
                findings.differing.append(entry)
                if findings.remediation.ran:
                    remedy(account, entry, gone=False)
                remedied.append(identity)
        kept = await _keep_orphans(session, integration.id, orphans)
        recorded = Recorded(report_id="", imported=importing)
        if findings.remediation.ran:
            for identity in remedied:
                pending = await state.ensure_pending(
                    session, integration.id, identity_id=identity.id, lane=state.lane_of(identity)
                )
                recorded.queued.append(pending)
                findings.remediation.queued.append(identity.user_name)
            if "deactivate_user" in template.actions:
                candidates = [
                    key
                    for key, orphan in kept.items()
                    if not orphan.protected and orphan.active is not False
                ]
                room = await guard.headroom(session, integration)
                recorded.deactivate = candidates[: min(DRIFT_DEACTIVATE_MAX, room)]
                findings.remediation.held = candidates[len(recorded.deactivate) :]
            findings.remediation.deactivate = recorded.deactivate
        report = DriftReport(
            integration_id=integration.id,
            job_id=job.id,
            imported=importing,
            accounts=len(seen),
            orphans=len(findings.orphans),
            missing=len(findings.missing),
            differing=len(findings.differing),
            protected=len(findings.protected),
            report=findings.model_dump(mode="json"),
        )
        session.add(report)
        if importing:
            await _end_import(session, integration.id, job.id, findings, len(seen))
        await session.commit()
        recorded.report_id = report.id
    if importing:
        recorded.released = list(
            await state.release_waiting(db, job.integration_id, reason=IMPORT_WAIT)
        )
    return recorded


async def _end_import(
    session: AsyncSession, integration_id: str, job_id: str, findings: DriftFindings, accounts: int
) -> None:
    """Make an importing integration plan from now on, in the transaction of its report."""
    ended = await session.exec(
        update(Integration)
        .where(Integration.id == integration_id, Integration.onboarding == Onboarding.importing)
        .values(onboarding=Onboarding.ready, updated_at=utcnow())
    )
    if ended.rowcount == 1:
        audit.record(
            session,
            actor=AUDIT_SYSTEM_ACTOR,
            event_name=IMPORTED,
            integration_id=integration_id,
            job_id=job_id,
            target=integration_id,
            detail={
                "accounts": accounts,
                "matched": findings.matched,
                "orphans": len(findings.orphans),
            },
        )


async def skip_import(db: Database, integration_id: str, *, actor: str) -> list[Job]:
    """Make an importing integration plan without its import, for an operator who knows the
    app holds no account Usher must find first; return the jobs that waited, queued."""
    async with db.session() as session:
        integration = await get_integration(session, integration_id)
        ended = await session.exec(
            update(Integration)
            .where(Integration.id == integration.id, Integration.onboarding == Onboarding.importing)
            .values(onboarding=Onboarding.ready, updated_at=utcnow())
        )
        if ended.rowcount != 1:
            raise InventoryUnavailable(f"integration {integration.id} is not importing")
        audit.record(
            session,
            actor=actor,
            event_name=IMPORT_SKIPPED,
            integration_id=integration.id,
            target=integration.id,
        )
        await session.commit()
    return list(await state.release_waiting(db, integration_id, reason=IMPORT_WAIT))


async def note_deactivations(
    db: Database, report_id: str, done: list[str], failed: list[str]
) -> None:
    """Record which orphans a remediation deactivated in the app, and which it could not."""
    async with db.session() as session:
        report = await session.get(DriftReport, report_id)
        if report is None:
            return
        now = utcnow()
        for orphan in (
            await session.exec(
                select(AppOrphan).where(
                    AppOrphan.integration_id == report.integration_id,
                    col(AppOrphan.app_key).in_(done),
                )
            )
        ).all():
            orphan.active, orphan.deactivated_at = False, now
            session.add(orphan)
        findings = DriftFindings.model_validate(report.report)
        findings.remediation.deactivated = done
        findings.remediation.failed = failed
        report.report = findings.model_dump(mode="json")
        session.add(report)
        await session.commit()


class DriftView(BaseModel):
    """A drift report as operators read it: when, from which job, what it found."""

    id: str
    integration_id: str
    job_id: str
    created_at: datetime
    imported: bool
    accounts: int
    findings: DriftFindings


class DriftState(BaseModel):
    """An integration's onboarding state and its latest drift report, if any."""

    integration_id: str
    onboarding: str
    remediate: bool
    authoritative: bool
    next_inventory_at: datetime | None
    report: DriftView | None


def _view(report: DriftReport) -> DriftView:
    """Return a stored report as operators read it."""
    return DriftView(
        id=report.id,
        integration_id=report.integration_id,
        job_id=report.job_id,
        created_at=report.created_at,
        imported=report.imported,
        accounts=report.accounts,
        findings=DriftFindings.model_validate(report.report),
    )


async def drift_of(
    session: AsyncSession, integration_id: str, job_id: str | None = None
) -> DriftState:
    """Return an integration's latest drift report (or the one a job stored)."""
    integration = await get_integration(session, integration_id)
    query = select(DriftReport).where(DriftReport.integration_id == integration.id)
    if job_id is not None:
        query = query.where(DriftReport.job_id == job_id)
    report = (
        await session.exec(query.order_by(col(DriftReport.created_at).desc()).limit(1))
    ).first()
    return DriftState(
        integration_id=integration.id,
        onboarding=integration.onboarding,
        remediate=integration.remediate,
        authoritative=integration.authoritative,
        next_inventory_at=integration.next_inventory_at,
        report=_view(report) if report is not None else None,
    )


def render_drift(drift: DriftState) -> str:
    """Lay an integration's drift out for a terminal."""
    lines = [f"integration  {drift.integration_id} ({drift.onboarding})"]
    if drift.report is None:
        lines.append(
            "no inventory yet: `usher reconcile --integration ID` runs one"
            + (" (the import is still due)" if drift.onboarding == Onboarding.importing else "")
        )
        return "\n".join(lines)
    report = drift.report
    kind = "import" if report.imported else "inventory"
    lines.append(
        f"{kind:<12} {report.created_at:%Y-%m-%d %H:%M:%S} UTC, job {report.job_id}:"
        f" {report.accounts} account(s) listed, {report.findings.matched} matched"
        + (f", {report.findings.adopted} found before Usher" if report.findings.adopted else "")
    )
    lines += render_findings(report.findings)
    return "\n".join(lines)
