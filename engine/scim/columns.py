"""Pure helpers between SCIM resources and their rows, so that storage and search agree."""

from functools import cache
from typing import Any, NamedTuple, cast
from unicodedata import normalize

from scim2_models import (
    Group,
    InvalidValueException,
    Meta,
    NotImplementedException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    Returned,
    ScimProvider,
    User,
)

from engine.scim.provider import OKTA_ENTITLEMENT_SCHEMA, OKTA_ROLE_SCHEMA
from engine.storage.models import Identity, ScimGroup

USER = "User"
GROUP = "Group"
CATALOGUE = "Catalogue"
ENDPOINTS = {USER: "Users", GROUP: "Groups"}
"""The endpoint of each kind of member, for the relative `$ref` scim2-server turns into a URL."""

SCHEMA_KINDS = {
    str(User.__schema__).casefold(): USER,
    str(Group.__schema__).casefold(): GROUP,
    OKTA_ENTITLEMENT_SCHEMA.casefold(): CATALOGUE,
    OKTA_ROLE_SCHEMA.casefold(): CATALOGUE,
}
TOMBSTONE_PREFIX = "Deleted:"
"""No character case-folds to an ASCII capital, so a tombstone never equals a live key."""

MAX_TEXT = 500
"""The length of the indexed text columns."""


class Member(NamedTuple):
    """One member of a group, as a Membership row holds it."""

    member_id: str
    member_type: str
    display: str | None


def kind_of(resource_type: ResourceType) -> str:
    """Return whether a resource type is stored as Users, Groups or the catalogue."""
    kind = SCHEMA_KINDS.get(str(resource_type.schema_).casefold())
    if kind is None:
        raise NotImplementedException(detail=f"{resource_type.name} is not stored")
    return kind


def model_of(provider: ScimProvider, resource_type: ResourceType) -> type[Resource[Any]]:
    """Return the model, extensions included, a provider composes for a resource type."""
    model = provider.model_for(resource_type)
    if model is None:
        raise NotImplementedException(detail=f"{resource_type.name} has no model")
    return cast(type[Resource[Any]], model)


def fold(value: str) -> str:
    """Return the key a case-insensitive value is stored and looked up under."""
    return normalize("NFC", value).casefold()


def tombstone(row_id: str) -> str:
    """Return the name key of a deleted user or group, so that its name can be reused."""
    return f"{TOMBSTONE_PREFIX}{row_id}"


def version_tag(version: int) -> str:
    """Return the weak ETag of a row version, as `meta.version` carries it."""
    return f'W/"{version}"'


def check_version(version: int, expected_version: str | None) -> None:
    """Refuse a write whose If-Match names a version the row no longer has."""
    if expected_version is not None and version_tag(version) != expected_version:
        raise PreconditionFailedException(detail=f"The resource is at {version_tag(version)}")


def storable(value: str) -> bool:
    """Tell whether a text fits a SQL text column: PostgreSQL refuses NUL, UTF-8 surrogates."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def bounded(value: str | None, attribute: str) -> str | None:
    """Refuse a value its column cannot hold, for a 400 rather than a database error."""
    if value is not None and len(value) > MAX_TEXT:
        raise InvalidValueException(detail=f"{attribute} is longer than {MAX_TEXT} characters")
    if value is not None and not storable(value):
        raise InvalidValueException(detail=f"{attribute} holds a NUL or an unpaired surrogate")
    return value


@cache
def hidden_fields(model: type[Resource[Any]]) -> set[str]:
    """Return the attributes never returned (password): Usher has no use for them, so no store."""
    return {
        name
        for name in model.model_fields
        if model.get_field_annotation(name, Returned) == Returned.never
    }


def without_empty_extensions(data: dict[str, Any]) -> dict[str, Any]:
    """Drop the `schemas` an extension object repeats, and the extensions left empty."""
    tidy: dict[str, Any] = {}
    for key, value in data.items():
        if key.startswith("urn:") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "schemas"}
            if not value:
                continue
        tidy[key] = value
    dropped = {k.casefold() for k in data} - {k.casefold() for k in tidy}
    if dropped and isinstance(tidy.get("schemas"), list):
        tidy["schemas"] = [s for s in tidy["schemas"] if str(s).casefold() not in dropped]
    return tidy


def stored_json(resource: Resource[Any], *excluded: str) -> dict[str, Any]:
    """Return the JSON kept in a row: camelCase as on the wire, without id, meta or secrets."""
    exclude = {"id", "meta", *hidden_fields(type(resource)), *excluded}
    data = resource.model_dump(
        mode="json", by_alias=True, exclude_none=True, scim_ctx=None, exclude=exclude
    )
    return without_empty_extensions(data)


def meta_of(resource_type: ResourceType, row: Identity | ScimGroup) -> Meta:
    """Return the meta of a row: its dates and its version, never its location."""
    return Meta(
        resource_type=resource_type.name,
        created=row.created_at,
        last_modified=row.updated_at,
        version=version_tag(row.version),
    )


def member_json(member: Member) -> dict[str, Any]:
    """Return a member as a Group lists it, with a `$ref` relative to the SCIM root."""
    data: dict[str, Any] = {"value": member.member_id, "type": member.member_type}
    endpoint = ENDPOINTS.get(member.member_type)
    if endpoint is not None:
        data["$ref"] = f"{endpoint}/{member.member_id}"
    if member.display is not None:
        data["display"] = member.display
    return data


def user_columns(resource: Resource[Any]) -> dict[str, Any]:
    """Return the indexed Identity columns of a User, refusing values they cannot hold."""
    user_name = getattr(resource, "user_name", None)
    if not isinstance(user_name, str) or not user_name:
        raise InvalidValueException(detail="userName is required")
    return {
        "user_name": bounded(user_name, "userName"),
        "user_name_key": bounded(fold(user_name), "userName"),
        "external_id": bounded(resource.external_id, "externalId"),
        "display_name": bounded(getattr(resource, "display_name", None), "displayName"),
        "active": getattr(resource, "active", None) is not False,
    }


def group_columns(resource: Resource[Any]) -> dict[str, Any]:
    """Return the indexed ScimGroup columns of a Group, refusing values they cannot hold."""
    display_name = getattr(resource, "display_name", None)
    if not isinstance(display_name, str) or not display_name:
        raise InvalidValueException(detail="displayName is required")
    return {
        "display_name": bounded(display_name, "displayName"),
        "display_name_key": bounded(fold(display_name), "displayName"),
        "external_id": bounded(resource.external_id, "externalId"),
    }


def requested_members(resource: Resource[Any]) -> dict[str, str | None]:
    """Return the display of each member a Group names, by member id."""
    members: dict[str, str | None] = {}
    for member in getattr(resource, "members", None) or ():
        if not member.value:
            raise InvalidValueException(detail="A member needs a value")
        members[bounded(member.value, "members.value")] = bounded(member.display, "members.display")
    return members
