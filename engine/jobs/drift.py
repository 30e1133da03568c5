"""Drift: what an inventory of the app shows, matched to identities and compared.

Pure functions of plain data. `list_users` reads the app's accounts into rows; the app's
template (`inventory:` in app.yaml) says which column is the app's key, which one is
matched to which `user.*` variable, and which columns show the status and entitlements.
An account is matched to an identity by the app's key Usher recorded, else by the rule;
an account no identity owns is an orphan. A matched account differs when the app no
longer shows what Usher granted, shows a value that neither Usher nor any source grants,
or shows it active while Usher left it deactivated (or the reverse).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from engine.apps.ownership import Ownership, account_key
from engine.apps.profile import user_variables
from engine.apps.template import AppTemplate, MatchRule
from engine.planner import (
    OBSERVED_STATUS,
    Desired,
    observed_active,
    observed_values,
)
from engine.storage.models import AppAccount, Identity

ROLES_VARIABLE = "observed_roles"
"""The name `observed_values` reads comma-separated labels from."""


@dataclass(frozen=True)
class SeenAccount:
    """One account as `list_users` showed it, in the catalogue's terms."""

    key: str
    match_key: str | None
    label: str
    active: bool | None
    entitlements: tuple[str, ...]


def compare_key(value: object, rule: MatchRule) -> str | None:
    """Return a value as the matching rule compares it: trimmed, case-folded if it says so."""
    if value is None or isinstance(value, bool | list | dict):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text.casefold() if rule.case_insensitive else text


def identity_match_key(identity: Identity, template: AppTemplate) -> str | None:
    """Return the identity's value of the template's matching attribute, as compared."""
    if template.inventory is None:
        return None
    rule = template.inventory.match
    variables = user_variables(identity.resource, template.extension)
    return compare_key(variables.get(rule.attribute), rule)


def seen_accounts(rows: Iterable[Mapping[str, str]], template: AppTemplate) -> list[SeenAccount]:
    """Return the accounts the rows show; a row without the app's key or a match value is
    named by what it has, and one with neither is left out."""
    spec = template.inventory
    if spec is None:
        return []
    seen: dict[str, SeenAccount] = {}
    for row in rows:
        label = str(row.get(spec.match.column, "")).strip()
        match_key = compare_key(label, spec.match)
        key = str(row.get(spec.key, "")).strip() or match_key
        if not key:
            continue
        shown = {OBSERVED_STATUS: row.get(spec.status, "") if spec.status else ""}
        shown[ROLES_VARIABLE] = ", ".join(str(row.get(c, "")) for c in spec.entitlements)
        seen.setdefault(
            key,
            SeenAccount(
                key=key,
                match_key=match_key,
                label=label or key,
                active=observed_active(shown),
                entitlements=tuple(observed_values(shown, template)),
            ),
        )
    return list(seen.values())


def protects_account(seen: SeenAccount, ownership: Ownership) -> bool:
    """Tell whether an account the app lists is the service account or a protected one."""
    names = {account_key(seen.key), account_key(seen.label)}
    if ownership.service_account and account_key(ownership.service_account) in names:
        return True
    return bool(names & ownership.protected)


def adopt(
    account: AppAccount,
    app_key: str,
    active: bool | None,
    entitlements: Iterable[str],
    now: datetime,
) -> None:
    """Record an account found in the app as observed, as a create that ended "already" does:
    nothing in it is Usher's, so nothing is invited again and nothing it holds is revoked
    unless the integration is authoritative."""
    account.exists = True
    account.app_key = app_key
    account.active = None
    account.attributes = {}
    account.observed_at = now
    account.observed_active = active
    account.observed_entitlements = sorted(set(entitlements) - set(account.entitlements))


def refresh(account: AppAccount, seen: SeenAccount, now: datetime) -> None:
    """Record what the app shows of an account Usher knows: listed, active, and the values
    it holds that Usher did not grant."""
    account.app_key = account.app_key or seen.key
    account.observed_exists = True
    account.inventoried_at = now
    account.observed_active = seen.active
    account.observed_entitlements = sorted(set(seen.entitlements) - set(account.entitlements))


class OrphanEntry(BaseModel):
    """An account the app lists that no identity owns."""

    key: str
    label: str
    active: bool | None
    entitlements: list[str]


class MissingEntry(BaseModel):
    """An identity that should have an account the app does not list."""

    identity_id: str
    user_name: str
    reason: str


class DifferingEntry(BaseModel):
    """An identity whose account shows otherwise than Usher granted."""

    identity_id: str
    user_name: str
    app_key: str | None
    not_shown: list[str]
    """Values Usher granted that the app no longer shows."""
    unexpected: list[str]
    """Values the app shows that neither Usher nor any source grants."""
    shown_active: bool | None = None
    granted_active: bool | None = None


class ProtectedEntry(BaseModel):
    """An account Usher never touches, listed apart: the service account or a listed one."""

    name: str
    identity_id: str | None
    key: str | None
    listed: bool


class Remediation(BaseModel):
    """What the run did about the drift, or why it did nothing."""

    ran: bool
    why: str
    queued: list[str] = []
    """The userNames whose jobs were queued."""
    deactivate: list[str] = []
    """The orphans' keys to deactivate."""
    held: list[str] = []
    """Orphans left active for now: the mass-change guard's hour had no room for them."""
    deactivated: list[str] = []
    failed: list[str] = []


class DriftFindings(BaseModel):
    """The lists of one drift report."""

    orphans: list[OrphanEntry] = []
    missing: list[MissingEntry] = []
    differing: list[DifferingEntry] = []
    protected: list[ProtectedEntry] = []
    matched: int = 0
    adopted: int = 0
    """Accounts recorded as found by this run: the app had them before Usher."""
    remediation: Remediation = Remediation(ran=False, why="not run")


def account_drift(
    identity: Identity,
    account: AppAccount,
    seen: SeenAccount,
    template: AppTemplate,
    desired: Desired,
) -> DifferingEntry | None:
    """Return how an account shows otherwise than Usher granted, or None when it does not.

    An exclusive value (a role, a plan) counts only when Usher or a source has one: an
    account keeps its role when none is granted.
    """
    exclusive = {e.value for e in template.entitlements if e.kind == "exclusive"}
    granted = set(account.entitlements)
    shown = set(seen.entitlements)
    allowed = granted | set(desired.entitlements)
    if not allowed & exclusive:
        shown -= exclusive
    not_shown = sorted(granted - set(seen.entitlements))
    unexpected = sorted(shown - allowed)
    active_differs = account.active is not None and seen.active not in (None, account.active)
    if not (not_shown or unexpected or active_differs):
        return None
    return DifferingEntry(
        identity_id=identity.id,
        user_name=identity.user_name,
        app_key=account.app_key,
        not_shown=not_shown,
        unexpected=unexpected,
        shown_active=seen.active if active_differs else None,
        granted_active=account.active if active_differs else None,
    )


def missing_reason(account: AppAccount | None, desired: Desired) -> str | None:
    """Return why an identity the app does not list is missing there, None when it need not
    be there."""
    if account is not None and account.exists:
        return "Usher recorded the account; the app no longer lists it"
    if desired.exists and desired.active:
        return "no account yet: its job has not created one"
    return None


def remedy(account: AppAccount, differing: DifferingEntry | None, gone: bool) -> None:
    """Make what Usher knows of an account what the app shows, so its next job fixes it."""
    if gone:
        account.exists, account.active, account.app_key = False, None, None
        account.entitlements, account.observed_entitlements = [], []
        account.observed_at, account.observed_active = None, None
        return
    if differing is None:
        return
    account.entitlements = sorted(set(account.entitlements) - set(differing.not_shown))
    if differing.shown_active is not None:
        account.active = differing.shown_active


def render_findings(findings: DriftFindings) -> list[str]:
    """Lay a report's lists out for a terminal."""
    lines = [f"orphans      {len(findings.orphans)} (accounts no identity owns)"]
    for orphan in findings.orphans:
        status = {True: "active", False: "deactivated", None: "status not shown"}[orphan.active]
        held = ", ".join(orphan.entitlements) or "nothing"
        lines.append(f"  {orphan.label} ({orphan.key}): {status}; holds {held}")
    lines.append(f"missing      {len(findings.missing)} (identities the app does not list)")
    lines += [f"  {m.user_name}: {m.reason}" for m in findings.missing]
    lines.append(f"differing    {len(findings.differing)} (otherwise than Usher granted)")
    for entry in findings.differing:
        parts = []
        if entry.not_shown:
            parts.append(f"granted, not shown: {', '.join(entry.not_shown)}")
        if entry.unexpected:
            parts.append(f"shown, granted by none: {', '.join(entry.unexpected)}")
        if entry.shown_active is not None:
            shown = "active" if entry.shown_active else "deactivated"
            parts.append(f"shown {shown}, Usher left it otherwise")
        lines.append(f"  {entry.user_name}: {'; '.join(parts)}")
    lines.append(f"protected    {len(findings.protected)} (never touched)")
    for entry in findings.protected:
        lines.append(f"  {entry.name}" + (" (listed in the app)" if entry.listed else ""))
    remediation = findings.remediation
    remedy_line = remediation.why
    if remediation.ran:
        remedy_line = (
            f"{len(remediation.queued)} job(s) queued,"
            f" {len(remediation.deactivated)} orphan(s) deactivated"
        )
        if remediation.failed:
            remedy_line += f", {len(remediation.failed)} could not be"
        if remediation.held:
            remedy_line += (
                f", {len(remediation.held)} left active: the mass-change guard's hour is full"
            )
    lines.append(f"remediation  {remedy_line}")
    return lines
