"""Integrations for the IT admin: what to paste into the IdP, and the entitlement values."""

from fastapi import APIRouter, HTTPException, status

from api.deps import CurrentOperator, SessionDep, SettingsDep
from engine.apps.integrations import IntegrationError, IntegrationView, describe_integration
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
