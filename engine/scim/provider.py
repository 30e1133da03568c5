"""SCIM protocol set-up: the provider Usher announces and the service serving it.

The provider describes Users (with the enterprise extension), Groups, and the read-only
entitlement catalogue Okta Identity Governance discovers (`/Entitlements`, `/Roles`). Its
`ScimPolicy` takes Entra's dialect: a `remove` whose value lists what to remove, a filtered
path that creates the entry it names, unknown attributes kept. `UsherScimService` adds what
the IdPs need on top of scim2-server's service.
"""

import re
from dataclasses import dataclass
from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    Filter,
    Patch,
    PatchOp,
    Path,
    Resource,
    ResourceType,
    ResponseParameters,
    Schema,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
)
from scim2_server.applications.base import BaseApplication
from scim2_server.conditions import Conditions
from scim2_server.errors import MethodNotAllowedException
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation, Target
from scim2_server.service import ScimService
from scim2_server.utils import load_default_resource_types, load_default_schemas, parametrize

from engine.apps.template import AppExtension, AppTemplate, load_app
from engine.constants import (
    SCIM_APP_CACHE_S,
    SCIM_AUTH_CACHE_S,
    SCIM_CACHE_SIZE,
    SCIM_MAX_RESULTS,
)
from engine.scim.cache import Tenant, TtlCache
from engine.scim.dialect import USER_SCHEMA, names_schema
from engine.scim.log import ScimLog
from engine.settings import Settings
from engine.storage.db import Database

OKTA_ENTITLEMENT_SCHEMA = "urn:okta:scim:schemas:core:1.0:Entitlement"
OKTA_ROLE_SCHEMA = "urn:okta:scim:schemas:core:1.0:Role"
CATALOGUE_SCHEMAS = frozenset(s.casefold() for s in (OKTA_ENTITLEMENT_SCHEMA, OKTA_ROLE_SCHEMA))
READS = frozenset({Operation.query, Operation.search, Operation.search_with_body})
SIMPLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
"""A top-level attribute name: no sub-attribute, no filter, no schema."""

ENTRA_POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.keep,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)
"""Entra's PATCH dialect, and the unknown attributes an IdP may send, taken as they come."""


def catalogue_attribute(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    """Describe one read-only string attribute of a catalogue entry."""
    return {
        "name": name,
        "type": "string",
        "multiValued": False,
        "description": description,
        "required": required,
        "caseExact": False,
        "mutability": "readOnly",
        "returned": "default",
        "uniqueness": "none",
    }


def catalogue_schemas() -> list[Schema]:
    """Describe Okta's Entitlement and Role, as Okta Identity Governance reads them."""
    display = catalogue_attribute("displayName", "The label the IT admin sees.", required=True)
    description = catalogue_attribute("description", "What holding it allows in the app.")
    kind = catalogue_attribute("type", "The kind of entitlement, as users' entitlements carry.")
    return [
        Schema.model_validate(
            {
                "id": OKTA_ENTITLEMENT_SCHEMA,
                "name": "Entitlement",
                "description": "An entitlement of the app; any number may be held.",
                "attributes": [display, kind, description],
            }
        ),
        Schema.model_validate(
            {
                "id": OKTA_ROLE_SCHEMA,
                "name": "Role",
                "description": "A role of the app; one is held at a time.",
                "attributes": [display, description],
            }
        ),
    ]


def catalogue_resource_types() -> list[ResourceType]:
    """Publish the catalogue at /Entitlements and /Roles; its `id`s are the string values."""
    return [
        ResourceType.model_validate(
            {
                "id": "Entitlement",
                "name": "Entitlement",
                "endpoint": "/Entitlements",
                "description": "The app's entitlements (multi), read-only.",
                "schema": OKTA_ENTITLEMENT_SCHEMA,
            }
        ),
        ResourceType.model_validate(
            {
                "id": "Role",
                "name": "Role",
                "endpoint": "/Roles",
                "description": "The app's exclusive roles, read-only.",
                "schema": OKTA_ROLE_SCHEMA,
            }
        ),
    ]


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


def extension_schema(extension: AppExtension) -> Schema:
    """Describe an app's own User extension, so the IdP can map attributes onto it."""
    return Schema.model_validate(
        {
            "id": extension.urn,
            "name": extension.name,
            "description": extension.description or f"{extension.name} attributes",
            "attributes": [
                {
                    "name": a.name,
                    "type": a.type,
                    "multiValued": False,
                    "description": a.description,
                    "required": False,
                    "caseExact": False,
                    "mutability": "readWrite",
                    "returned": "default",
                    "uniqueness": "none",
                }
                for a in extension.attributes
            ],
        }
    )


def with_extension(resource_type: ResourceType, urn: str) -> ResourceType:
    """Return the User resource type with the app's extension declared on it."""
    data = resource_type.model_dump(by_alias=True, exclude_none=True)
    data["schemaExtensions"] = [
        *data.get("schemaExtensions", []),
        {"schema": urn, "required": False},
    ]
    return ResourceType.model_validate(data)


def build_provider(extension: AppExtension | None = None) -> ScimProvider:
    """Describe Users (enterprise and the app's extension), Groups and the catalogue."""
    schemas = [*load_default_schemas().values(), *catalogue_schemas()]
    resource_types = [*load_default_resource_types().values(), *catalogue_resource_types()]
    if extension is not None:
        schemas.append(extension_schema(extension))
        resource_types = [
            with_extension(rt, extension.urn) if rt.id == "User" else rt for rt in resource_types
        ]
    return ScimProvider.from_discovery(
        schemas, resource_types, config=service_provider_config(), policy=ENTRA_POLICY
    )


def is_catalogue(resource_type: ResourceType) -> bool:
    """Tell whether a resource type is the read-only entitlement catalogue."""
    return str(resource_type.schema_).casefold() in CATALOGUE_SCHEMAS


def known_schemas(resource_type: ResourceType) -> frozenset[str]:
    """Return the case-folded schema URNs a resource type declares, extensions included."""
    extensions = [str(e.schema_) for e in resource_type.schema_extensions or []]
    return frozenset(s.casefold() for s in (str(resource_type.schema_), *extensions))


def unknown_schema(name: str, known: frozenset[str]) -> bool:
    """Tell whether a URN-qualified name lies under a schema the resource type does not declare."""
    folded = name.casefold()
    return folded.startswith("urn:") and not any(
        folded == schema or folded.startswith(f"{schema}:") for schema in known
    )


def extension_target(name: str, extras: dict[str, Any]) -> tuple[str, str | None]:
    """Split an unknown URN name into its schema and attribute; a whole extension has none."""
    held = next((k for k in extras if k.casefold() == name.casefold()), None)
    if held is not None or names_schema(name):
        return held or name, None
    schema, _, attribute = name.rpartition(":")
    return schema, attribute


def written(current: Any, attribute: str | None, value: Any, *, remove: bool) -> dict[str, Any]:
    """Return an extension's attributes once an operation has set or removed one, or all."""
    data = dict(current) if isinstance(current, dict) else {}
    if attribute is None:
        return {} if remove else {**data, **value} if isinstance(value, dict) else data
    if remove:
        data.pop(attribute, None)
    else:
        data[attribute] = value
    return data


def write_extension(extras: dict[str, Any], name: str, value: Any, *, remove: bool = False) -> bool:
    """Set or remove an unknown extension attribute kept on a resource; tell if it changed."""
    schema, attribute = extension_target(name, extras)
    if attribute is not None and "." in attribute:
        return False
    held = next((k for k in extras if k.casefold() == schema.casefold()), schema)
    current = extras.get(held)
    data = written(current, attribute, value, remove=remove)
    if (data or None) == current:
        return False
    extras.pop(held, None)
    if data:
        extras[held] = data
    return True


def write_attribute(extras: dict[str, Any], name: str, value: Any, *, remove: bool) -> bool:
    """Set or remove an unknown top-level attribute kept on a resource; tell if it changed."""
    held = next((k for k in extras if k.casefold() == name.casefold()), name)
    current = extras.get(held)
    if (None if remove else value) == current:
        return False
    extras.pop(held, None)
    if not remove:
        extras[held] = value
    return True


def write_unknown(
    resource: Resource[Any], name: str, value: Any, known: frozenset[str], *, remove: bool
) -> bool:
    """Write an attribute no model declares, if the name is one; tell if anything changed."""
    extras = resource.unknown_attributes
    if unknown_schema(name, known) and "[" not in name:
        return write_extension(extras, name, value, remove=remove)
    if SIMPLE_NAME.match(name) and parametrize(Path, type(resource))(name).resolve() is None:
        return write_attribute(extras, name, value, remove=remove)
    return False


def patch_unknown(resource: Resource[Any], patch_op: "PatchOp[Any]", known: frozenset[str]) -> bool:
    """Apply the operations on undeclared attributes, which scim2-models drops: custom ones."""
    changed = False
    for operation in patch_op.operations or []:
        remove = operation.op == operation.Op.remove
        if operation.path is not None:
            changed |= write_unknown(
                resource, str(operation.path), operation.value, known, remove=remove
            )
        elif isinstance(operation.value, dict) and not remove:
            for name, value in operation.value.items():
                if isinstance(name, str):
                    changed |= write_unknown(resource, name, value, known, remove=False)
    if changed:
        extras = resource.unknown_attributes
        declared = [s for s in resource.schemas if not unknown_schema(s, known)]
        resource.schemas = declared + [s for s in extras if s.casefold().startswith("urn:")]
    return changed


class UsherScimService(ScimService):
    """scim2-server's service, with what Okta and Entra expect beyond its defaults."""

    def authorize(self, request: ScimRequest, target: Target, resource_type: ResourceType) -> None:
        """Serve the entitlement catalogue read-only: the app template is its source."""
        if is_catalogue(resource_type) and target.operation not in READS:
            raise MethodNotAllowedException(
                allowed=["GET"], detail=f"{resource_type.name} is read-only: see the app template"
            )

    def apply_replacement(
        self, current: Resource[Any], replacement: Resource[Any], conditions: Conditions
    ) -> Resource[Any] | None:
        """Keep a user's stored `active` when a PUT leaves it out, as Okta's wizard apps send."""
        if getattr(replacement, "active", True) is None:
            replacement.active = getattr(current, "active", None)
        return super().apply_replacement(current, replacement, conditions)

    def apply_patch(
        self, current: Resource[Any], patch_op: "PatchOp[Any]", conditions: Conditions
    ) -> Resource[Any] | None:
        """Apply a PATCH, attributes no schema declares included: IdPs send custom ones."""
        self.check_preconditions(current, "PATCH", conditions)
        known = known_schemas(self.get_resource_type_of(current))
        changed = bool(patch_op.patch(current))
        changed = patch_unknown(current, patch_op, known) or changed
        return current if changed else None

    def patch_response(
        self,
        base_url: str,
        resource: Resource[Any],
        response_parameters: ResponseParameters[Any],
    ) -> ScimResponse:
        """Answer a User PATCH with the user (Okta and Entra read it), a Group PATCH with 204."""
        resource_type = self.get_resource_type_of(resource)
        if str(resource_type.schema_).casefold() != USER_SCHEMA.casefold():
            return super().patch_response(base_url, resource, response_parameters)
        return self.replacement_response(base_url, resource, response_parameters)


def build_service(settings: Settings, extension: AppExtension | None = None) -> UsherScimService:
    """Build the service from Settings, never from the environment."""
    return UsherScimService(build_provider(extension), secret=settings.scim_secret)


@dataclass(frozen=True)
class AppService:
    """An app's template, the SCIM service publishing its schema, and the front serving it."""

    template: AppTemplate
    service: UsherScimService
    front: BaseApplication


class ScimServices:
    """What serving SCIM keeps in one process, each piece built once or cached with a bound.

    One service per app extension (an app's schema is part of its service); each app's
    template with its service, for SCIM_APP_CACHE_S (an edited app.yaml is served within
    that); each integration's app and token hash, for SCIM_AUTH_CACHE_S (a rotated token is
    refused within that); the SCIM log's lines of reads, written in batches.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default = build_service(settings)
        self.front = BaseApplication(self.default.provider, self.default)
        self._by_extension: dict[str, UsherScimService] = {}
        self._apps: TtlCache[str, AppService] = TtlCache(SCIM_APP_CACHE_S, SCIM_CACHE_SIZE)
        self.tenants: TtlCache[str, Tenant] = TtlCache(SCIM_AUTH_CACHE_S, SCIM_CACHE_SIZE)
        self.log = ScimLog()

    def for_app(self, template: AppTemplate) -> UsherScimService:
        """Return the service publishing the app's extension, or the default one."""
        if template.extension is None:
            return self.default
        key = template.extension.model_dump_json()
        if key not in self._by_extension:
            self._by_extension[key] = build_service(self.settings, template.extension)
        return self._by_extension[key]

    def app(self, name: str) -> AppService:
        """Return an app's template and SCIM service, read again after SCIM_APP_CACHE_S."""
        cached = self._apps.get(name)
        if cached is not None:
            return cached
        template = load_app(self.settings.flows_dir, name)
        service = self.for_app(template)
        cached = AppService(template, service, BaseApplication(service.provider, service))
        self._apps.put(name, cached)
        return cached

    async def close(self, db: Database) -> None:
        """Write the log lines still held, before the process stops."""
        await self.log.close(db)


def catalogue_schema_of(kind: str) -> str:
    """Return the Okta schema an app entitlement of a kind is published under."""
    return OKTA_ROLE_SCHEMA if kind == "exclusive" else OKTA_ENTITLEMENT_SCHEMA
