"""The app's entitlement catalogue, published read-only for Okta Identity Governance to discover."""

from collections.abc import Sequence
from typing import Any

from scim2_models import Meta, NotFoundException, Resource, ResourceType, ScimProvider

from engine.apps.template import Entitlement
from engine.scim.columns import model_of
from engine.scim.provider import catalogue_schema_of


def catalogue_json(entitlement: Entitlement) -> dict[str, Any]:
    """Return an app entitlement as the Okta Entitlement or Role resource it is published as."""
    data: dict[str, Any] = {"displayName": entitlement.label}
    if entitlement.kind == "multi":
        data["type"] = "Entitlement"
    if entitlement.description:
        data["description"] = entitlement.description
    return data


class Catalogue:
    """An app template's entitlements, served at /Entitlements (multi) and /Roles (exclusive).

    The template is the source: the entries have no row, no version and no creation date, and
    SCIM never writes them.
    """

    def __init__(self, provider: ScimProvider, entitlements: Sequence[Entitlement] = ()) -> None:
        self.provider = provider
        self.entitlements = tuple(entitlements)

    def entries(self, resource_type: ResourceType) -> list[Resource[Any]]:
        """Return the entitlements a catalogue resource type lists, in template order."""
        schema = str(resource_type.schema_).casefold()
        model = model_of(self.provider, resource_type)
        entries = []
        for entitlement in self.entitlements:
            if catalogue_schema_of(entitlement.kind).casefold() != schema:
                continue
            entry = model.model_validate(catalogue_json(entitlement))
            entry.id = entitlement.value
            entry.meta = Meta(resource_type=resource_type.name)
            entries.append(entry)
        return entries

    def entry(self, resource_type: ResourceType, value: str) -> Resource[Any]:
        """Return one entry by its string value."""
        entry = next((e for e in self.entries(resource_type) if e.id == value), None)
        if entry is None:
            raise NotFoundException(detail=f"{resource_type.name} {value!r} not found")
        return entry
