"""The `user.*` variables flows see, derived from a stored SCIM User resource."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.apps.template import AppExtension

ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

USER_VARIABLES: tuple[str, ...] = (
    "user_name",
    "email",
    "first_name",
    "last_name",
    "full_name",
    "display_name",
    "nick_name",
    "title",
    "external_id",
    "active",
    "department",
    "employee_number",
    "manager_id",
    "entitlements",
    "roles",
)
"""Every `user.*` variable Usher derives; an app's template names the ones its flows use."""


def _primary_email(resource: dict[str, Any]) -> str | None:
    """Return the primary email, else the work email, else the first, else a mail-like userName."""
    emails = [e for e in resource.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    for predicate in (lambda e: e.get("primary") is True, lambda e: e.get("type") == "work"):
        for email in emails:
            if predicate(email):
                return str(email["value"])
    if emails:
        return str(emails[0]["value"])
    user_name = resource.get("userName")
    return user_name if isinstance(user_name, str) and "@" in user_name else None


def _values(items: Any) -> list[str]:
    """Return the sorted distinct `value`s of a multi-valued attribute."""
    values = {str(i["value"]) for i in items or [] if isinstance(i, dict) and i.get("value")}
    return sorted(values)


def _extension_values(resource: dict[str, Any], extension: "AppExtension") -> dict[str, Any]:
    """Return the app extension's attributes, its URN matched case-insensitively."""
    urn = extension.urn.casefold()
    block = next((v for k, v in resource.items() if k.casefold() == urn), None) or {}
    by_name = {k.casefold(): v for k, v in block.items()} if isinstance(block, dict) else {}
    return {a.name: by_name.get(a.name.casefold()) for a in extension.attributes}


def user_variables(
    resource: dict[str, Any], extension: "AppExtension | None" = None
) -> dict[str, Any]:
    """Return every `user.*` variable of a SCIM User resource (camelCase, as stored)."""
    name = resource.get("name") or {}
    enterprise = resource.get(ENTERPRISE_URN) or {}
    manager = enterprise.get("manager")
    first, last = name.get("givenName"), name.get("familyName")
    full = name.get("formatted") or " ".join(p for p in (first, last) if p) or None
    return {
        "user_name": resource.get("userName"),
        "email": _primary_email(resource),
        "first_name": first,
        "last_name": last,
        "full_name": full,
        "display_name": resource.get("displayName") or full,
        "nick_name": resource.get("nickName"),
        "title": resource.get("title"),
        "external_id": resource.get("externalId"),
        "active": resource.get("active", True) is not False,
        "department": enterprise.get("department"),
        "employee_number": enterprise.get("employeeNumber"),
        "manager_id": manager.get("value") if isinstance(manager, dict) else manager,
        "entitlements": _values(resource.get("entitlements")),
        "roles": _values(resource.get("roles")),
        **(_extension_values(resource, extension) if extension else {}),
    }


def watched_projection(
    resource: dict[str, Any] | None,
    used: frozenset[str],
    extension: "AppExtension | None" = None,
) -> dict[str, Any]:
    """Return the variables an app's flows use: a change outside them needs no job."""
    if resource is None:
        return {}
    variables = user_variables(resource, extension)
    return {name: variables[name] for name in sorted(used | {"active"}) if name in variables}
