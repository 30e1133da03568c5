"""Drift, as pure functions: matching an app's rows to identities and comparing accounts."""

import pytest

from engine.apps.ownership import Ownership
from engine.apps.template import AppTemplate, MatchRule, load_app
from engine.jobs.drift import (
    DriftFindings,
    OrphanEntry,
    ProtectedEntry,
    account_drift,
    compare_key,
    identity_match_key,
    missing_reason,
    protects_account,
    remedy,
    render_findings,
    seen_accounts,
)
from engine.planner import desired_state
from engine.storage.models import AppAccount, Identity
from tests.harness import ROOT


@pytest.fixture
def acme() -> AppTemplate:
    """Return the Acme template as shipped, with its inventory section."""
    return load_app(ROOT / "flows", "acme")


def person(email: str, *, entitlements: list[str] = (), active: bool = True) -> Identity:  # type: ignore[assignment]
    """Return an identity as a SCIM POST stores it."""
    return Identity(
        integration_id="i",
        user_name=email,
        user_name_key=email.casefold(),
        resource={
            "userName": email,
            "active": active,
            "emails": [{"value": email, "primary": True}],
            "entitlements": [{"value": v} for v in entitlements],
        },
    )


def row(key: str, email: str, *, roles: str = "", plan: str = "Free", status: str = "Active"):  # type: ignore[no-untyped-def]
    """Return one row as Acme's list_users reads it from /people."""
    return {"key": key, "email": email, "name": "N", "plan": plan, "roles": roles, "status": status}


def test_the_rule_compares_trimmed_and_case_folded_values_unless_told_otherwise() -> None:
    """Emails match whatever their case; a case-sensitive rule keeps it; blanks match nothing."""
    folded = MatchRule(attribute="email", column="email")
    exact = MatchRule(attribute="email", column="email", case_insensitive=False)
    assert compare_key("  Ann@Example.COM ", folded) == "ann@example.com"
    assert compare_key("Ann@Example.COM", exact) == "Ann@Example.COM"
    assert compare_key("   ", folded) is None
    assert compare_key(None, folded) is None


def test_an_identity_is_matched_by_its_primary_email(acme: AppTemplate) -> None:
    """The template matches on user.email: the identity's primary email, case-folded."""
    assert identity_match_key(person("Ann.Lee@Example.com"), acme) == "ann.lee@example.com"


def test_rows_become_accounts_in_the_catalogues_terms(acme: AppTemplate) -> None:
    """Roles and the plan are read by label; the status by word; one row per key."""
    rows = [
        row("u1", "Ann@example.com", roles="Billing, Editor", plan="Pro"),
        row("u2", "bob@example.com", status="Deactivated"),
        row("u1", "ann@example.com"),
        {"key": "", "email": "", "plan": "", "roles": "", "status": ""},
        row("", "no.key@example.com"),
    ]
    seen = seen_accounts(rows, acme)
    assert [(s.key, s.match_key, s.active, s.entitlements) for s in seen] == [
        ("u1", "ann@example.com", True, ("billing", "editor", "plan-pro")),
        ("u2", "bob@example.com", False, ("plan-free",)),
        ("no.key@example.com", "no.key@example.com", True, ("plan-free",)),
    ]


def test_an_inventory_needs_list_users_and_a_matchable_attribute(acme: AppTemplate) -> None:
    """Without list_users the app cannot be read (flows check notes it); a rule on a user
    variable that names no one, or on none at all, is refused."""
    assert acme.can_inventory
    data = acme.model_dump(exclude={"folder"})
    without = {**data, "actions": [a for a in data["actions"] if a != "list_users"]}
    assert not AppTemplate.model_validate(without).can_inventory
    for attribute in ("roles", "shoe_size"):
        data["inventory"]["match"]["attribute"] = attribute
        with pytest.raises(ValueError, match=f"{attribute!r} names no one"):
            AppTemplate.model_validate(data)


def test_an_account_matches_when_it_shows_what_usher_granted(acme: AppTemplate) -> None:
    """Granted editor, shown editor and the default plan: no drift."""
    ann = person("ann@example.com", entitlements=["editor"])
    account = AppAccount(integration_id="i", identity_id="a", exists=True, active=True)
    account.entitlements = ["editor"]
    (seen,) = seen_accounts([row("u1", "ann@example.com", roles="Editor")], acme)
    desired = desired_state(ann, acme)
    assert account_drift(ann, account, seen, acme, desired) is None


def test_what_changed_behind_ushers_back_is_named(acme: AppTemplate) -> None:
    """Editor taken away and Admin added in the app, the account deactivated there."""
    ann = person("ann@example.com", entitlements=["editor"])
    account = AppAccount(integration_id="i", identity_id="a", exists=True, active=True)
    account.entitlements = ["editor"]
    (seen,) = seen_accounts(
        [row("u1", "ann@example.com", roles="Admin", status="Deactivated")], acme
    )
    entry = account_drift(ann, account, seen, acme, desired_state(ann, acme))
    assert entry is not None
    assert (entry.not_shown, entry.unexpected) == (["editor"], ["admin"])
    assert (entry.shown_active, entry.granted_active) == (False, True)


def test_a_plan_counts_only_when_usher_or_a_source_grants_one(acme: AppTemplate) -> None:
    """An account keeps its plan when none is granted; a granted plan changed is drift."""
    ann = person("ann@example.com")
    account = AppAccount(integration_id="i", identity_id="a", exists=True, active=True)
    (free,) = seen_accounts([row("u1", "ann@example.com", plan="Pro")], acme)
    assert account_drift(ann, account, free, acme, desired_state(ann, acme)) is None
    account.entitlements = ["plan-enterprise"]
    entry = account_drift(ann, account, free, acme, desired_state(ann, acme))
    assert entry is not None
    assert (entry.not_shown, entry.unexpected) == (["plan-enterprise"], ["plan-pro"])


def test_a_role_found_before_usher_and_granted_by_no_source_is_reported(
    acme: AppTemplate,
) -> None:
    """An imported account's Billing, which the IdP does not grant: reported as unexpected;
    the Editor the IdP does grant is not."""
    ann = person("ann@example.com", entitlements=["editor"])
    account = AppAccount(integration_id="i", identity_id="a", exists=True)
    (seen,) = seen_accounts([row("u1", "ann@example.com", roles="Billing, Editor")], acme)
    entry = account_drift(ann, account, seen, acme, desired_state(ann, acme))
    assert entry is not None and (entry.not_shown, entry.unexpected) == ([], ["billing"])
    assert entry.shown_active is None, "Usher never set it active or not: no status drift"


def test_an_identity_is_missing_only_when_it_should_have_an_account(acme: AppTemplate) -> None:
    """Recorded and gone; or never created while active. A deactivated newcomer is fine."""
    ann = person("ann@example.com")
    gone = AppAccount(integration_id="i", identity_id="a", exists=True)
    assert "no longer lists it" in (missing_reason(gone, desired_state(ann, acme)) or "")
    assert "no account yet" in (missing_reason(None, desired_state(ann, acme)) or "")
    inactive = person("ina@example.com", active=False)
    assert missing_reason(None, desired_state(inactive, acme)) is None


def test_remedying_makes_the_record_what_the_app_shows(acme: AppTemplate) -> None:
    """A grant not shown is forgotten (so the job grants it again); a gone account is new."""
    ann = person("ann@example.com", entitlements=["editor"])
    account = AppAccount(integration_id="i", identity_id="a", exists=True, active=True)
    account.entitlements, account.app_key = ["editor", "viewer"], "u1"
    (seen,) = seen_accounts([row("u1", "ann@example.com", roles="Viewer")], acme)
    entry = account_drift(ann, account, seen, acme, desired_state(ann, acme))
    remedy(account, entry, gone=False)
    assert account.entitlements == ["viewer"]
    remedy(account, None, gone=True)
    assert (account.exists, account.app_key, account.entitlements) == (False, None, [])


def test_the_service_account_and_listed_accounts_are_protected(acme: AppTemplate) -> None:
    """By the app's key or the matched value, any case."""
    ownership = Ownership(protected=frozenset({"vip@example.com"}), service_account="usher-bot")
    rows = [row("u1", "VIP@example.com"), row("usher-bot", ""), row("u3", "x@example.com")]
    assert [protects_account(s, ownership) for s in seen_accounts(rows, acme)] == [
        True,
        True,
        False,
    ]


def test_the_report_reads_as_lists_for_a_terminal() -> None:
    """Each list with its count; protected accounts apart; why nothing was remedied."""
    findings = DriftFindings(
        orphans=[OrphanEntry(key="u9", label="eve@example.com", active=True, entitlements=[])],
        protected=[ProtectedEntry(name="vip@example.com", identity_id=None, key="u1", listed=True)],
    )
    lines = render_findings(findings)
    assert lines[0] == "orphans      1 (accounts no identity owns)"
    assert "  eve@example.com (u9): active; holds nothing" in lines
    assert "protected    1 (never touched)" in lines
    assert "  vip@example.com (listed in the app)" in lines
    assert lines[-1] == "remediation  not run"
