"""Compute what an account should be now, and the actions that get it there.

Pure functions of plain data: the identity, the groups it is a live member of, the
integration's mappings and the app's template. Three sources grant an entitlement value,
merged: the user's own `entitlements` and `roles`, a pushed group named after the value
(displayName or externalId), and a mapping of a group named otherwise. A value is revoked
only when no source grants it any more; of the exclusive values granted, the highest rank
wins, and when none is granted the account keeps its role.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.apps.grants import NO_GROUPS, GroupSources, group_grants
from engine.apps.profile import user_variables
from engine.apps.template import AppTemplate, Entitlement
from engine.storage.models import AppAccount, Identity

USER_ENTITLEMENTS = "user entitlements"
"""The source of a value the user's own `entitlements` attribute carries."""
USER_ROLES = "user roles"
"""The source of a value the user's own `roles` attribute carries."""


@dataclass(frozen=True)
class Desired:
    """What the IdP says the app account should be, computed when the job runs."""

    exists: bool
    active: bool
    attributes: dict[str, Any]
    entitlements: frozenset[str]
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """For each entitlement value granted, every source that grants it."""


@dataclass(frozen=True)
class PlannedAction:
    """One flow to run: its action name and, for entitlements, the target value.

    `sources` names what grants the target (user attribute, group, mapping); a revoke has
    none, since no source grants its value any more.
    """

    name: str
    entitlement: Entitlement | None = None
    sources: tuple[str, ...] = ()

    @property
    def target(self) -> str | None:
        """Return the entitlement value the action is about, if any."""
        return self.entitlement.value if self.entitlement else None


@dataclass
class Plan:
    """The ordered actions of one reconcile: create before grant before deactivate."""

    actions: list[PlannedAction] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


def granted(
    variables: dict[str, Any], template: AppTemplate, groups: GroupSources
) -> dict[str, tuple[str, ...]]:
    """Return each catalogue value some source grants, with every source granting it."""
    catalogue = {e.value for e in template.entitlements}
    sources: dict[str, list[str]] = {}

    def grant(value: str, source: str) -> None:
        if value in catalogue and source not in sources.setdefault(value, []):
            sources[value].append(source)

    for value in variables["entitlements"]:
        grant(value, USER_ENTITLEMENTS)
    for value in variables["roles"]:
        grant(value, USER_ROLES)
    for group in groups.groups:
        for value, source in group_grants(group, groups.mappings, catalogue):
            grant(value, source)
    return {value: tuple(found) for value, found in sorted(sources.items())}


def desired_state(
    identity: Identity, template: AppTemplate, groups: GroupSources = NO_GROUPS
) -> Desired:
    """Return what the account should be: a deleted identity's account is deactivated."""
    if identity.deleted_at is not None:
        return Desired(exists=False, active=False, attributes={}, entitlements=frozenset())
    variables = user_variables(identity.resource, template.extension)
    sources = granted(variables, template, groups)
    return Desired(
        exists=True,
        active=bool(variables["active"]),
        attributes={name: variables[name] for name in sorted(template.attributes)},
        entitlements=frozenset(sources),
        sources=sources,
    )


def _entitlement_actions(
    desired: Desired, account: AppAccount, template: AppTemplate
) -> list[PlannedAction]:
    """Return grants, revokes and the exclusive role change, highest rank winning."""
    by_value = {e.value: e for e in template.entitlements}
    known = set(account.entitlements)
    multi = {v for v in desired.entitlements if by_value[v].kind == "multi"}
    actions = [
        PlannedAction("grant_entitlement", by_value[v], desired.sources.get(v, ()))
        for v in sorted(multi - known)
    ]
    revocable = {v for v in known - multi if v in by_value and by_value[v].kind == "multi"}
    actions += [PlannedAction("revoke_entitlement", by_value[v]) for v in sorted(revocable)]
    exclusive = [by_value[v] for v in desired.entitlements if by_value[v].kind == "exclusive"]
    if exclusive:
        top = max(exclusive, key=lambda e: (e.rank, e.value))
        if top.value not in known:
            actions.append(PlannedAction("set_role", top, desired.sources.get(top.value, ())))
    return actions


def plan(
    identity: Identity,
    account: AppAccount,
    template: AppTemplate,
    groups: GroupSources = NO_GROUPS,
) -> Plan:
    """Return desired - known as ordered actions, leaving out what the app cannot do.

    A create is followed by an update: an invite form seldom sets every attribute, and an
    account that already existed may differ; the update checks first and skips if so.
    """
    desired = desired_state(identity, template, groups)
    wanted: list[PlannedAction] = []
    if not account.exists:
        if desired.exists and desired.active:
            wanted.append(PlannedAction("create_user"))
            if "update_user" in template.actions:
                wanted.append(PlannedAction("update_user"))
            wanted += _entitlement_actions(desired, account, template)
    elif not desired.exists or not desired.active:
        if account.active is not False:
            wanted.append(PlannedAction("deactivate_user"))
    else:
        if account.active is False:
            wanted.append(PlannedAction("reactivate_user"))
        if account.attributes != desired.attributes:
            wanted.append(PlannedAction("update_user"))
        wanted += _entitlement_actions(desired, account, template)
    return Plan(
        actions=[a for a in wanted if a.name in template.actions],
        unsupported=[a.name for a in wanted if a.name not in template.actions],
    )


def apply_success(
    action: PlannedAction,
    account: AppAccount,
    desired: Desired,
    template: AppTemplate,
    app_key: str | None,
) -> None:
    """Record on the account what a successful action made true in the app."""
    if app_key:
        account.app_key = app_key
    name = action.name
    if name == "create_user":
        account.exists, account.active = True, True
        account.attributes = {}
    elif name == "update_user":
        account.attributes = dict(desired.attributes)
    elif name == "deactivate_user":
        account.active = False
    elif name == "reactivate_user":
        account.active = True
    elif name == "grant_entitlement" and action.target:
        account.entitlements = sorted({*account.entitlements, action.target})
    elif name == "revoke_entitlement" and action.target:
        account.entitlements = sorted(set(account.entitlements) - {action.target})
    elif name == "set_role" and action.target:
        exclusive = {e.value for e in template.entitlements if e.kind == "exclusive"}
        account.entitlements = sorted((set(account.entitlements) - exclusive) | {action.target})
