"""The entitlement catalogue: the app's entitlements as read-only Okta Entitlements and Roles."""

import pytest
from scim2_models import NotFoundException, ScimProvider, SearchRequest
from scim2_server.errors import MethodNotAllowedException
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.template import Entitlement
from engine.scim.storage import SqlScimStorage
from tests.scim.directory import RecordingMarker, add_integration


async def test_the_entitlement_catalogue_is_served_read_only(
    session: AsyncSession, provider: ScimProvider
) -> None:
    """Multi entitlements list as Okta Entitlements, exclusive ones as Roles; no writes."""
    catalogue = [
        Entitlement(value="viewer", label="Viewer"),
        Entitlement(value="plan-pro", label="Pro plan", kind="exclusive", rank=1),
    ]
    integration_id = await add_integration(session)
    storage = SqlScimStorage(
        session, integration_id, RecordingMarker(), provider=provider, catalogue=catalogue
    )
    types = {rt.id: rt for rt in provider.resource_types}
    model = provider.model_for(types["Role"])

    entitlements = await storage.search([types["Entitlement"]], SearchRequest(start_index=1))
    roles = await storage.search([types["Role"]], SearchRequest(start_index=1))
    role = await storage.get(types["Role"], "plan-pro")

    assert [(e.id, e.display_name, e.type) for e in entitlements.resources] == [
        ("viewer", "Viewer", "Entitlement")
    ]
    assert [r.id for r in roles.resources] == ["plan-pro"] and role.display_name == "Pro plan"
    with pytest.raises(NotFoundException):
        await storage.get(types["Role"], "viewer")
    with pytest.raises(MethodNotAllowedException):
        await storage.create(types["Role"], model(display_name="Root"))
