"""SCIM protocol set-up: the provider Usher announces and the service serving it."""

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    Filter,
    Patch,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
)
from scim2_server.service import ScimService
from scim2_server.utils import load_default_resource_types, load_default_schemas

from engine.constants import SCIM_MAX_RESULTS
from engine.settings import Settings


def service_provider_config() -> ServiceProviderConfig:
    """Say truthfully what Usher supports: PATCH, filters, ETags and bearer tokens."""
    return ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=SCIM_MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="The integration's SCIM token, sent as `Authorization: Bearer`.",
                primary=True,
            )
        ],
    )


def build_provider() -> ScimProvider:
    """Describe Users (with the enterprise extension) and Groups."""
    return ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=service_provider_config(),
    )


def build_service(settings: Settings) -> ScimService:
    """Build the service from Settings, never from the environment."""
    return ScimService(build_provider(), secret=settings.scim_secret)
