"""People and identities as operators see them: each one's provisioning state at a glance,
and one identity's resource, groups, entitlements with their sources, account and jobs."""

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import load_groups
from engine.apps.template import load_app
from engine.constants import PEOPLE_PAGE_SIZE, RECENT_WINDOW_S
from engine.jobs.activity import ActivityFilter, ActivityPage, list_activity
from engine.jobs.state import PENDING
from engine.planner import desired_state
from engine.settings import Settings
from engine.storage.models import AppAccount, Identity, Integration, Job, JobStatus, utcnow

HIDDEN = "password"
"""Any attribute whose name holds this is never shown, however the IdP spelt it."""


class PersonRow(BaseModel):
    """One identity of an integration and where its provisioning stands."""

    id: str
    user_name: str
    display_name: str | None
    state: str
    job_id: str | None
    updated_at: datetime


def provisioning_state(identity: Identity, account: AppAccount | None, job: Job | None) -> str:
    """Return one word for where an identity stands: the newest job first, then the account."""
    if job is not None and job.status in PENDING:
        return "awaiting"
    if job is not None and job.status == JobStatus.running:
        return "in progress"
    if job is not None and job.status == JobStatus.failed:
        return "failed"
    if job is not None and job.status in (JobStatus.blocked, JobStatus.action_required):
        return "blocked"
    gone = identity.deleted_at is not None or not identity.active
    if gone:
        return "deactivated" if account is None or not account.active else "awaiting"
    if account is not None and account.exists and account.active:
        return "provisioned"
    return "awaiting"


async def _newest_jobs(session: AsyncSession, identity_ids: list[str]) -> dict[str, Job]:
    """Return each identity's newest job, in one read."""
    newest = (
        select(Job.identity_id, func.max(Job.created_at).label("at"))
        .where(col(Job.identity_id).in_(identity_ids))
        .group_by(Job.identity_id)
        .subquery()
    )
    query = select(Job).join(
        newest, (Job.identity_id == newest.c.identity_id) & (Job.created_at == newest.c.at)
    )
    return {job.identity_id: job for job in (await session.exec(query)).all() if job.identity_id}


async def list_people(
    session: AsyncSession,
    integration_id: str,
    search: str | None = None,
    limit: int = PEOPLE_PAGE_SIZE,
) -> list[PersonRow]:
    """Return an integration's identities by userName with their state, matching `search`."""
    query = select(Identity).where(Identity.integration_id == integration_id)
    if search and search.strip():
        pattern = f"%{search.strip().casefold()}%"
        query = query.where(
            or_(
                col(Identity.user_name_key).like(pattern),
                col(Identity.display_name).ilike(pattern),
            )
        )
    query = query.order_by(col(Identity.user_name_key)).limit(limit)
    identities = (await session.exec(query)).all()
    ids = [i.id for i in identities]
    jobs = await _newest_jobs(session, ids)
    accounts = {
        a.identity_id: a
        for a in (
            await session.exec(select(AppAccount).where(col(AppAccount.identity_id).in_(ids)))
        ).all()
    }
    return [
        PersonRow(
            id=i.id,
            user_name=i.user_name,
            display_name=i.display_name,
            state=provisioning_state(i, accounts.get(i.id), jobs.get(i.id)),
            job_id=jobs[i.id].id if i.id in jobs else None,
            updated_at=i.updated_at,
        )
        for i in identities
    ]


def without_secrets(value: Any) -> Any:
    """Return a SCIM resource with every password-like attribute left out, at any depth."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if HIDDEN not in str(k).casefold()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


class EntitlementHeld(BaseModel):
    """An entitlement value the identity should hold, and every source that grants it."""

    value: str
    sources: list[str]


class AccountView(BaseModel):
    """What Usher granted in the app, apart from what it observed there."""

    exists: bool
    active: bool | None
    app_key: str | None
    granted: list[str]
    observed_active: bool | None
    observed: list[str]
    reconciled_generation: int


class IdentityView(BaseModel):
    """One identity as the IdP sent it and as Usher provisions it."""

    id: str
    integration_id: str
    user_name: str
    display_name: str | None
    active: bool
    deleted: bool
    generation: int
    state: str
    resource: dict[str, Any]
    groups: list[str]
    entitlements: list[EntitlementHeld]
    account: AccountView | None
    jobs: ActivityPage


async def describe_identity(
    session: AsyncSession, settings: Settings, identity_id: str
) -> IdentityView | None:
    """Return what an operator reviews of an identity, None when there is no such identity."""
    identity = await session.get(Identity, identity_id)
    if identity is None:
        return None
    integration = await session.get(Integration, identity.integration_id)
    template = load_app(settings.flows_dir, integration.app) if integration else None
    groups = (await load_groups(session, identity.integration_id, identity.id)).of(identity.id)
    desired = desired_state(identity, template, groups) if template else None
    account = (
        await session.exec(select(AppAccount).where(AppAccount.identity_id == identity.id))
    ).first()
    jobs = await list_activity(session, ActivityFilter(identity_id=identity.id))
    newest = await _newest_jobs(session, [identity.id])
    return IdentityView(
        id=identity.id,
        integration_id=identity.integration_id,
        user_name=identity.user_name,
        display_name=identity.display_name,
        active=identity.active,
        deleted=identity.deleted_at is not None,
        generation=identity.generation,
        state=provisioning_state(identity, account, newest.get(identity.id)),
        resource=without_secrets(identity.resource),
        groups=[g.display_name for g in groups.groups],
        entitlements=[
            EntitlementHeld(value=value, sources=list(sources))
            for value, sources in (desired.sources.items() if desired else [])
        ],
        account=AccountView(
            exists=account.exists,
            active=account.active,
            app_key=account.app_key,
            granted=sorted(account.entitlements),
            observed_active=account.observed_active,
            observed=sorted(set(account.observed_entitlements) - set(account.entitlements)),
            reconciled_generation=account.reconciled_generation,
        )
        if account
        else None,
        jobs=jobs,
    )


async def recent_counts(session: AsyncSession, integration_id: str) -> dict[str, int]:
    """Return how many of an integration's jobs of the last RECENT_WINDOW_S end in each state."""
    since = utcnow() - timedelta(seconds=RECENT_WINDOW_S)
    query = (
        select(Job.status, func.count())
        .where(Job.integration_id == integration_id, Job.created_at >= since)
        .group_by(Job.status)
    )
    return {status: count for status, count in (await session.exec(query)).all()}
