"""Compute what an account should be now, and the actions that get it there.

Pure functions of plain data: the identity, the groups it is a live member of, the
integration's mappings, the identity's live direct assignments and the app's template.
Four sources grant an entitlement value, merged: the user's own `entitlements` and `roles`,
a pushed group named after the value (displayName or externalId), a mapping of a group
named otherwise, and an assignment made through the assignments API. A value is revoked
only when no source grants it any more; of the exclusive values granted, the highest rank
wins, and when none is granted the account keeps its role.

What Usher granted (by an action it ran) is kept apart from what it observed in the app (an
account a create found already there, with what it showed). Usher removes only what it
granted, unless the integration is authoritative; observed differences become notes in the
plan. Protected accounts (the service account, break-glass admins) get no action at all.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.apps.assignments import assignment_source
from engine.apps.grants import NO_GROUPS, GroupSources, group_grants
from engine.apps.ownership import NOT_AUTHORITATIVE, Ownership
from engine.apps.profile import user_variables
from engine.apps.template import AppTemplate, Entitlement
from engine.storage.models import AppAccount, Identity

USER_ENTITLEMENTS = "user entitlements"
"""The source of a value the user's own `entitlements` attribute carries."""
USER_ROLES = "user roles"
"""The source of a value the user's own `roles` attribute carries."""
OBSERVED_STATUS = "observed_status"
"""The variable a create flow may extract the found account's status into (Active, ...)."""
OBSERVED_ROLES = ("observed_roles", "observed_role")
"""The variables a create flow may extract the found account's roles into (labels, commas)."""
ACTIVE_WORDS = frozenset({"active", "enabled", "true", "yes"})
INACTIVE_WORDS = frozenset({"deactivated", "inactive", "disabled", "suspended", "false", "no"})


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
    """The ordered actions of one reconcile: create before grant before deactivate.

    `notes` say what the plan leaves alone and why (observed in the app, not granted by
    Usher; a protected account); `protected` is set when the account is never touched.
    """

    actions: list[PlannedAction] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    protected: str | None = None


REMOVAL_ACTIONS = frozenset({"deactivate_user", "delete_user", "revoke_entitlement"})
"""The actions that take access away; a set_role that lowers the rank does too."""


def removes_access(action: PlannedAction, account: AppAccount, template: AppTemplate) -> bool:
    """Tell whether an action takes access away, as the mass-change guard counts it.

    Deactivating, deleting and revoking do; a set_role does when the account holds an
    exclusive role of a higher rank than the one it sets (Enterprise down to Free).
    """
    if action.name in REMOVAL_ACTIONS:
        return True
    if action.name != "set_role" or action.entitlement is None:
        return False
    ranks = {e.value: e.rank for e in template.entitlements if e.kind == "exclusive"}
    held = {*account.entitlements, *account.observed_entitlements}
    return any(ranks[v] > action.entitlement.rank for v in held if v in ranks)


def action_label(action: PlannedAction) -> str:
    """Return an action as operators read it: its name and the value it is about."""
    return f"{action.name} {action.target}" if action.target else action.name


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
    for assigned in groups.assignments:
        grant(assigned.value, assignment_source(assigned))
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


def _labels(values: Any) -> str:
    """Return values as a sorted, comma-separated list."""
    return ", ".join(sorted(values))


def _entitlement_actions(
    desired: Desired, account: AppAccount, template: AppTemplate, ownership: Ownership
) -> tuple[list[PlannedAction], list[str]]:
    """Return grants, revokes and the exclusive role change, highest rank winning; and notes.

    Only what Usher granted is revoked, or lowered, unless the integration is authoritative;
    what it observed in the app and no source grants is kept and noted.
    """
    by_value = {e.value: e for e in template.entitlements}
    known = set(account.entitlements)
    seen = set(account.observed_entitlements) - known
    held = known | seen
    notes: list[str] = []
    multi = {v for v in desired.entitlements if by_value[v].kind == "multi"}
    actions = [
        PlannedAction("grant_entitlement", by_value[v], desired.sources.get(v, ()))
        for v in sorted(multi - held)
    ]
    removable = known | seen if ownership.authoritative else known
    revocable = {v for v in removable - multi if v in by_value and by_value[v].kind == "multi"}
    actions += [PlannedAction("revoke_entitlement", by_value[v]) for v in sorted(revocable)]
    kept = {v for v in seen - multi - revocable if v in by_value and by_value[v].kind == "multi"}
    if kept:
        notes.append(f"keeps {_labels(kept)}: found in the app, not granted by Usher")
    exclusive = [by_value[v] for v in desired.entitlements if by_value[v].kind == "exclusive"]
    held_exclusive = [
        by_value[v] for v in held if v in by_value and by_value[v].kind == "exclusive"
    ]
    if exclusive:
        top = max(exclusive, key=lambda e: (e.rank, e.value))
        higher = [e.value for e in held_exclusive if e.value in seen and e.rank > top.rank]
        if top.value in held:
            pass
        elif higher and not ownership.authoritative:
            notes.append(
                f"keeps {_labels(higher)} over {top.value}: found in the app, not granted by "
                "Usher, and the integration is not authoritative"
            )
        else:
            actions.append(PlannedAction("set_role", top, desired.sources.get(top.value, ())))
    elif held_exclusive:
        notes.append(
            f"keeps {_labels(e.value for e in held_exclusive)}: no source grants an exclusive role"
        )
    return actions, notes


def _may_deactivate(account: AppAccount, ownership: Ownership, notes: list[str]) -> bool:
    """Tell whether to deactivate an account: Usher activated it, or it is authoritative."""
    if account.active is False or (account.active is None and account.observed_active is False):
        return False
    if account.active is True or ownership.authoritative:
        return True
    notes.append(
        "not deactivated: the account existed before Usher, which did not activate it, and "
        "the integration is not authoritative"
    )
    return False


def _removal(
    account: AppAccount, template: AppTemplate, ownership: Ownership, notes: list[str]
) -> list[PlannedAction]:
    """Return what a SCIM DELETE does: delete_user where opted in, else deactivate and revoke."""
    ours = account.observed_at is None or ownership.authoritative
    if ownership.delete_users and "delete_user" in template.actions:
        if ours:
            return [PlannedAction("delete_user")]
        notes.append("not deleted: the account existed before Usher")
    elif ownership.delete_users:
        notes.append(f"not deleted: {template.name} has no delete_user flow")
    actions = (
        [PlannedAction("deactivate_user")] if _may_deactivate(account, ownership, notes) else []
    )
    by_value = {e.value: e for e in template.entitlements}
    known = set(account.entitlements)
    seen = set(account.observed_entitlements) - known
    removable = known | seen if ownership.authoritative else known
    multi = {v for v in removable if v in by_value and by_value[v].kind == "multi"}
    actions += [PlannedAction("revoke_entitlement", by_value[v]) for v in sorted(multi)]
    kept = {v for v in seen - removable if v in by_value}
    if kept:
        notes.append(f"keeps {_labels(kept)}: found in the app, not granted by Usher")
    roles = {v for v in known | seen if v in by_value and by_value[v].kind == "exclusive"}
    if roles:
        notes.append(f"keeps {_labels(roles)}: an exclusive role is replaced, never revoked")
    return actions


def plan(
    identity: Identity,
    account: AppAccount,
    template: AppTemplate,
    groups: GroupSources = NO_GROUPS,
    ownership: Ownership = NOT_AUTHORITATIVE,
) -> Plan:
    """Return desired - known as ordered actions, leaving out what the app cannot do.

    A create is followed by an update: an invite form seldom sets every attribute, and an
    account that already existed may differ. The runner skips the update when the create
    recorded every attribute (`create_sets`); otherwise the update checks first.
    `active: false` deactivates and keeps the entitlements recorded for a reactivation; a
    SCIM DELETE deactivates and revokes what Usher granted (or deletes, where opted in).
    """
    protected = ownership.protects(identity, template)
    if protected is not None:
        return Plan(notes=[protected], protected=protected)
    desired = desired_state(identity, template, groups)
    wanted: list[PlannedAction] = []
    notes: list[str] = []
    if not account.exists:
        if desired.exists and desired.active:
            wanted.append(PlannedAction("create_user"))
            if "update_user" in template.actions:
                wanted.append(PlannedAction("update_user"))
            grants, notes = _entitlement_actions(desired, account, template, ownership)
            wanted += grants
    elif not desired.exists:
        wanted += _removal(account, template, ownership, notes)
    elif not desired.active:
        if _may_deactivate(account, ownership, notes):
            wanted.append(PlannedAction("deactivate_user"))
    else:
        if account.active is False or (account.active is None and account.observed_active is False):
            wanted.append(PlannedAction("reactivate_user"))
        if attributes_pending(account, desired):
            wanted.append(PlannedAction("update_user"))
        changes, notes = _entitlement_actions(desired, account, template, ownership)
        wanted += changes
    return Plan(
        actions=[a for a in wanted if a.name in template.actions],
        unsupported=[a.name for a in wanted if a.name not in template.actions],
        notes=notes,
    )


def observed_active(extracted: Mapping[str, str]) -> bool | None:
    """Return the status a flow extracted (`observed_status`): True, False or None if unsaid."""
    word = extracted.get(OBSERVED_STATUS, "").strip().casefold()
    if word in ACTIVE_WORDS:
        return True
    if word in INACTIVE_WORDS:
        return False
    return None


def observed_values(extracted: Mapping[str, str], template: AppTemplate) -> list[str]:
    """Return the catalogue values a flow extracted (`observed_roles`), by label or value."""
    by_name = {}
    for entitlement in template.entitlements:
        by_name[entitlement.label.casefold()] = entitlement.value
        by_name[entitlement.value.casefold()] = entitlement.value
    found = set()
    for key in OBSERVED_ROLES:
        for part in extracted.get(key, "").split(","):
            value = by_name.get(part.strip().casefold())
            if value is not None:
                found.add(value)
    return sorted(found)


def attributes_pending(account: AppAccount, desired: Desired) -> bool:
    """Tell whether the account's recorded attributes differ from the IdP's: an update is due."""
    return account.attributes != desired.attributes


def created_attributes(desired: Desired, template: AppTemplate) -> dict[str, Any]:
    """Return the attributes a new account holds after its create: what create_user fills
    in (`create_sets`) and those the IdP leaves empty, which a new account lacks too."""
    return {
        name: value
        for name, value in desired.attributes.items()
        if name in template.create_sets or value in (None, "")
    }


def apply_success(
    action: PlannedAction,
    account: AppAccount,
    desired: Desired,
    template: AppTemplate,
    app_key: str | None,
    *,
    found: bool = False,
    extracted: Mapping[str, str] | None = None,
) -> None:
    """Record on the account what a successful action made true in the app.

    `found`: the action found its state already so and Usher had not tried it before. A
    create that found the account records it as observed (active or not, the roles it
    showed, as far as the flow extracted them) and grants nothing; on such an account, a
    grant or reactivation found already so is observed too, never counted as Usher's.
    """
    if app_key:
        account.app_key = app_key
    name = action.name
    exclusive = {e.value for e in template.entitlements if e.kind == "exclusive"}
    adopted = account.observed_at is not None
    if name == "create_user":
        account.exists = True
        account.attributes = {} if found else created_attributes(desired, template)
        if found:
            seen = extracted or {}
            account.active = None
            account.observed_at = datetime.now(UTC)
            account.observed_active = observed_active(seen)
            account.observed_entitlements = observed_values(seen, template)
        else:
            account.active = True
    elif name == "update_user":
        account.attributes = dict(desired.attributes)
    elif name == "deactivate_user":
        account.active = False
        if adopted:
            account.observed_active = False
    elif name == "reactivate_user":
        if found and adopted and account.active is None:
            account.observed_active = True
        else:
            account.active = True
    elif name == "grant_entitlement" and action.target:
        if found and adopted:
            account.observed_entitlements = sorted({*account.observed_entitlements, action.target})
        else:
            account.entitlements = sorted({*account.entitlements, action.target})
    elif name == "revoke_entitlement" and action.target:
        account.entitlements = sorted(set(account.entitlements) - {action.target})
        account.observed_entitlements = sorted(set(account.observed_entitlements) - {action.target})
    elif name == "set_role" and action.target:
        observed = set(account.observed_entitlements) - exclusive
        granted_now = set(account.entitlements) - exclusive
        if found and adopted:
            observed.add(action.target)
        else:
            granted_now.add(action.target)
        account.entitlements = sorted(granted_now)
        account.observed_entitlements = sorted(observed)
    elif name == "delete_user":
        account.exists, account.active, account.app_key = False, None, None
        account.entitlements, account.observed_entitlements = [], []
        account.observed_at, account.observed_active = None, None
