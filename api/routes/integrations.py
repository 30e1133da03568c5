"""Integrations for the IT admin: what to paste into the IdP, and the entitlement values."""

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from api.deps import CurrentOperator, DbDep, QueueDep, SessionDep, SettingsDep
from engine.apps.integrations import IntegrationError, IntegrationView, describe_integration
from engine.jobs.breaker import resume
from engine.jobs.state import JobNotFound
from engine.storage.vault import Vault

router = APIRouter(prefix="/api/integrations", tags=["integrations"])


@router.get("/{integration_id}", response_model=IntegrationView)
async def get_integration(
    integration_id: str, operator: CurrentOperator, session: SessionDep, settings: SettingsDep
) -> IntegrationView:
    """Describe one integration: SCIM URL, app, health, missing secrets, entitlement values."""
    vault = Vault.from_path(settings.vault_key_path)
    try:
        return await describe_integration(session, settings, vault, integration_id)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


class ResumeOut(BaseModel):
    """What resuming an integration did."""

    id: str
    breaker: str
    released_jobs: int


@router.post("/{integration_id}/resume", response_model=ResumeOut)
async def resume_integration(
    integration_id: str, db: DbDep, queue: QueueDep, _operator: CurrentOperator
) -> ResumeOut:
    """Close the sign-in breaker after fixing a secret, and deliver the jobs that waited."""
    try:
        released = await resume(db, integration_id)
    except JobNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    await queue.enqueue_all(released)
    return ResumeOut(id=integration_id, breaker="closed", released_jobs=len(released))
