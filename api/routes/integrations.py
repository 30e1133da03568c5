"""Integrations for the IT admin: what to paste into the IdP, and the entitlement values."""

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field

from api.deps import AdminOperator, CurrentOperator, DbDep, QueueDep, SessionDep, SettingsDep
from engine.apps.grants import MappingView
from engine.apps.integrations import (
    IntegrationError,
    IntegrationView,
    describe_integration,
    set_ownership,
)
from engine.apps.mappings import MappingError
from engine.apps.template import AppError
from engine.apps.webhooks import WebhookView, describe_webhook
from engine.jobs.breaker import resume
from engine.jobs.groups import map_group, mappings_of, unmap_group
from engine.jobs.inventory import DriftState, InventoryUnavailable, drift_of, queue_inventory
from engine.jobs.preview import IntegrationPlan, plan_integration
from engine.jobs.state import JobNotFound
from engine.storage.vault import Vault

router = APIRouter(prefix="/api/integrations", tags=["integrations"])


@router.get("/{integration_id}", response_model=IntegrationView)
async def get_integration(
    integration_id: str, _operator: CurrentOperator, session: SessionDep, settings: SettingsDep
) -> IntegrationView:
    """Describe one integration: SCIM URL, app, health, missing secrets, entitlement values."""
    vault = Vault.from_path(settings.vault_key_path)
    try:
        return await describe_integration(session, settings, vault, integration_id)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@router.get("/{integration_id}/drift", response_model=DriftState)
async def get_drift(
    integration_id: str, _operator: CurrentOperator, session: SessionDep
) -> DriftState:
    """The latest drift report: orphans, identities missing in the app, what differs from what
    Usher granted, protected accounts apart; and whether the integration is still importing."""
    try:
        return await drift_of(session, integration_id)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


class ReconcileOut(BaseModel):
    """The inventory job queued (or already pending) to read the app's accounts."""

    job_id: str
    status: str


@router.post(
    "/{integration_id}/reconcile",
    response_model=ReconcileOut,
    status_code=status.HTTP_202_ACCEPTED,
)
async def post_reconcile(
    integration_id: str,
    operator: AdminOperator,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
) -> ReconcileOut:
    """Read the app's accounts now (list_users); GET …/drift shows the report once it ran."""
    vault = Vault.from_path(settings.vault_key_path)
    try:
        job = await queue_inventory(session, settings, vault, integration_id, actor=operator.name)
    except InventoryUnavailable as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except (IntegrationError, AppError) as error:
        raise _refusal(error) from None
    await queue.enqueue(job)
    return ReconcileOut(job_id=job.id, status=job.status)


@router.get("/{integration_id}/webhook", response_model=WebhookView)
async def get_webhook(
    integration_id: str, _operator: CurrentOperator, session: SessionDep
) -> WebhookView:
    """Where the integration's alerts go and their latest deliveries; never the secret."""
    try:
        return await describe_webhook(session, integration_id)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


class ResumeOut(BaseModel):
    """What resuming an integration did."""

    id: str
    breaker: str
    released_jobs: int


@router.post("/{integration_id}/resume", response_model=ResumeOut)
async def resume_integration(
    integration_id: str, db: DbDep, queue: QueueDep, operator: AdminOperator
) -> ResumeOut:
    """Close the sign-in breaker after fixing a secret, and deliver the jobs that waited."""
    try:
        released = await resume(db, integration_id, actor=operator.name)
    except JobNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    await queue.enqueue_all(released)
    return ResumeOut(id=integration_id, breaker="closed", released_jobs=len(released))


def _refusal(error: Exception) -> HTTPException:
    """Answer a mapping or plan error: 400 for what to fix, 404 for what is not there."""
    if isinstance(error, MappingError | AppError):
        return HTTPException(status.HTTP_400_BAD_REQUEST, str(error))
    return HTTPException(status.HTTP_404_NOT_FOUND, str(error))


class MappingIn(BaseModel):
    """Map a group (displayName, externalId or id) to an entitlement value."""

    group: str = Field(min_length=1, max_length=500)
    value: str = Field(min_length=1, max_length=500)


class MappingOut(BaseModel):
    """A mapping, whether it was new, and the group jobs queued for its members."""

    mapping: MappingView
    created: bool
    group_pushed: bool
    queued_jobs: int


class UnmappedOut(BaseModel):
    """The mappings removed and the group jobs queued for their members."""

    removed: list[MappingView]
    queued_jobs: int


@router.get("/{integration_id}/mappings", response_model=list[MappingView])
async def get_mappings(
    integration_id: str, _operator: CurrentOperator, session: SessionDep
) -> list[MappingView]:
    """List an integration's group mappings."""
    try:
        return await mappings_of(session, integration_id)
    except IntegrationError as error:
        raise _refusal(error) from None


@router.post("/{integration_id}/mappings", response_model=MappingOut)
async def post_mapping(
    integration_id: str,
    body: MappingIn,
    response: Response,
    operator: AdminOperator,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
) -> MappingOut:
    """Grant a value to a group's members (201; 200 when that mapping already exists)."""
    try:
        change, jobs = await map_group(
            session, settings, integration_id, body.group, body.value, actor=operator.name
        )
    except (IntegrationError, AppError) as error:
        raise _refusal(error) from None
    await queue.enqueue_all(jobs)
    response.status_code = status.HTTP_201_CREATED if change.created else status.HTTP_200_OK
    return MappingOut(
        mapping=change.mappings[0],
        created=change.created,
        group_pushed=bool(change.groups),
        queued_jobs=len(jobs),
    )


@router.delete("/{integration_id}/mappings", response_model=UnmappedOut)
async def delete_mappings(
    integration_id: str,
    group: str,
    operator: AdminOperator,
    session: SessionDep,
    queue: QueueDep,
    value: str | None = None,
) -> UnmappedOut:
    """Remove a group's mappings (`?group=NAME[&value=V]`); its members are re-evaluated."""
    try:
        change, jobs = await unmap_group(session, integration_id, group, value, actor=operator.name)
    except IntegrationError as error:
        raise _refusal(error) from None
    await queue.enqueue_all(jobs)
    return UnmappedOut(removed=change.mappings, queued_jobs=len(jobs))


@router.get("/{integration_id}/plan", response_model=IntegrationPlan)
async def get_plan(
    integration_id: str,
    _operator: CurrentOperator,
    session: SessionDep,
    settings: SettingsDep,
    user: str | None = None,
) -> IntegrationPlan:
    """What each identity's job would do now, with what grants each action; nothing runs."""
    try:
        return await plan_integration(session, settings, integration_id, user)
    except (IntegrationError, AppError) as error:
        raise _refusal(error) from None


class OwnershipIn(BaseModel):
    """What an integration's jobs may touch; a field left out is left as it is."""

    authoritative: bool | None = None
    delete_users: bool | None = None
    protected_accounts: list[str] | None = Field(default=None, max_length=1000)
    remediate: bool | None = None


class OwnershipOut(BaseModel):
    """An integration's ownership settings after the change."""

    id: str
    authoritative: bool
    delete_users: bool
    protected_accounts: list[str]
    remediate: bool


@router.put("/{integration_id}/ownership", response_model=OwnershipOut)
async def put_ownership(
    integration_id: str, body: OwnershipIn, operator: AdminOperator, session: SessionDep
) -> OwnershipOut:
    """Make the integration authoritative or not, opt in to delete_user, list protected accounts,
    opt in to remedying drift (only where authoritative).

    It takes effect at each identity's next job; GET …/plan shows what that would do.
    """
    try:
        integration = await set_ownership(
            session,
            integration_id,
            authoritative=body.authoritative,
            delete_users=body.delete_users,
            protected_accounts=body.protected_accounts,
            remediate=body.remediate,
            actor=operator.name,
        )
    except IntegrationError as error:
        raise _refusal(error) from None
    return OwnershipOut(
        id=integration.id,
        authoritative=integration.authoritative,
        delete_users=integration.delete_users,
        protected_accounts=list(integration.protected_accounts),
        remediate=integration.remediate,
    )
