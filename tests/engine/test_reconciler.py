"""The plan: desired minus known, computed when the job runs, in a safe order."""

from datetime import UTC, datetime

from engine.apps.template import load_app
from engine.planner import apply_success, desired_state, plan
from engine.storage.models import AppAccount, Identity
from tests.harness import ROOT

ACME = load_app(ROOT / "flows", "acme")


def identity(**resource: object) -> Identity:
    """Return a stored SCIM user with the given attributes."""
    base = {
        "userName": "ann@example.com",
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"value": "ann@example.com", "primary": True}],
        "active": True,
    }
    return Identity(
        integration_id="i",
        user_name="ann@example.com",
        user_name_key="ann@example.com",
        resource={**base, **resource},
    )


def account(**fields: object) -> AppAccount:
    """Return what Usher knows of the app account."""
    return AppAccount(integration_id="i", identity_id="x", **fields)


def names(user: Identity, known: AppAccount) -> list[tuple[str, str | None]]:
    """Return the planned actions with their targets."""
    return [(a.name, a.target) for a in plan(user, known, ACME).actions]


def test_a_new_user_is_created_then_granted() -> None:
    """Create, then update what the invite left out, then grants; the top-ranked plan wins."""
    user = identity(
        entitlements=[{"value": "viewer"}, {"value": "plan-pro"}, {"value": "nope"}],
        roles=[{"value": "plan-free"}, {"value": "admin"}],
    )
    assert names(user, account()) == [
        ("create_user", None),
        ("update_user", None),
        ("grant_entitlement", "admin"),
        ("grant_entitlement", "viewer"),
        ("set_role", "plan-pro"),
    ]


def test_an_inactive_new_user_gets_no_account() -> None:
    """Nothing to create for a user the IdP already deactivated."""
    assert names(identity(active=False), account()) == []


def test_known_accounts_get_only_the_difference() -> None:
    """Profile change, one revoke, one grant; nothing for what is already so."""
    known = account(
        exists=True,
        active=True,
        entitlements=["editor", "viewer"],
        attributes={
            "costCenter": None,
            "email": "ann@example.com",
            "first_name": "Ann",
            "last_name": "Lee",
        },
    )
    user = identity(
        name={"givenName": "Ann", "familyName": "Li"},
        entitlements=[{"value": "viewer"}, {"value": "billing"}],
    )
    assert names(user, known) == [
        ("update_user", None),
        ("grant_entitlement", "billing"),
        ("revoke_entitlement", "editor"),
    ]
    unchanged = identity(entitlements=[{"value": "viewer"}, {"value": "editor"}])
    assert names(unchanged, known) == []


def test_deactivation_and_deletion_deactivate() -> None:
    """active=false and a SCIM DELETE both deactivate; reactivation undoes it."""
    known = account(exists=True, active=True, attributes=desired_state(identity(), ACME).attributes)
    assert names(identity(active=False), known) == [("deactivate_user", None)]
    deleted = identity()
    deleted.deleted_at = datetime.now(UTC)
    assert names(deleted, known) == [("deactivate_user", None)]
    known.active = False
    assert names(identity(), known) == [("reactivate_user", None)]
    assert names(identity(active=False), known) == []


def test_apply_success_records_what_the_app_now_holds() -> None:
    """After set_role the account holds one plan; the create records the app's key."""
    user = identity(entitlements=[{"value": "plan-enterprise"}])
    known = account(entitlements=["plan-free", "viewer"])
    desired = desired_state(user, ACME)
    create, *_, set_role = plan(user, known, ACME).actions
    apply_success(create, known, desired, ACME, "u000042")
    apply_success(set_role, known, desired, ACME, None)
    assert known.app_key == "u000042" and known.exists and known.active
    assert known.entitlements == ["plan-enterprise", "viewer"]
