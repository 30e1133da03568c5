"""The plan: desired minus known, computed when the job runs, in a safe order."""

from datetime import UTC, datetime

from engine.apps.grants import GroupKind, GroupRef, GroupSources, MappingRule, granting_nothing
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


# Groups: pushed groups named after a value, mappings, and the user's own attributes.

EDITORS = GroupRef("g-editor", "editor")
WRITERS = GroupRef("g-writers", "Writers", "7f1c-entra-object-id")
ACME_EDITORS = GroupRef("g-acme-editors", "Acme Editors")
PRO = GroupRef("g-pro", "plan-pro")
ENTERPRISE = GroupRef("g-enterprise", "Enterprise customers", "ent-object-id")
SALES = GroupRef("g-sales", "Sales")
MAPPINGS = (
    MappingRule(GroupKind.id, "g-acme-editors", "editor"),
    MappingRule(GroupKind.external_id, "7f1c-entra-object-id", "editor"),
    MappingRule(GroupKind.external_id, "ent-object-id", "plan-enterprise"),
)


def sources(*groups: GroupRef) -> GroupSources:
    """Return an identity's groups with the integration's mappings."""
    return GroupSources(groups=groups, mappings=MAPPINGS)


def actions(user: Identity, known: AppAccount, groups: GroupSources) -> list[tuple]:
    """Return the planned actions with their targets and sources."""
    return [(a.name, a.target, a.sources) for a in plan(user, known, ACME, groups).actions]


def held(*values: str) -> AppAccount:
    """Return a known, up-to-date account holding some values."""
    attributes = desired_state(identity(), ACME).attributes
    return account(exists=True, active=True, attributes=attributes, entitlements=list(values))


def test_every_source_is_merged_and_named() -> None:
    """User attributes, a group named after a value, a mapped group: one desired set."""
    user = identity(entitlements=[{"value": "viewer"}], roles=[{"value": "editor"}])
    desired = desired_state(user, ACME, sources(EDITORS, ACME_EDITORS, WRITERS, PRO, SALES))
    assert desired.entitlements == {"viewer", "editor", "plan-pro"}
    assert desired.sources == {
        "editor": (
            "user roles",
            'group "editor"',
            'mapping of group "Acme Editors"',
            'mapping of group "Writers"',
        ),
        "plan-pro": ('group "plan-pro"',),
        "viewer": ("user entitlements",),
    }


def test_grants_carry_their_sources() -> None:
    """A new account: each grant and the role say what grants them."""
    user = identity(entitlements=[{"value": "viewer"}])
    assert actions(user, account(), sources(ACME_EDITORS, PRO)) == [
        ("create_user", None, ()),
        ("update_user", None, ()),
        ("grant_entitlement", "editor", ('mapping of group "Acme Editors"',)),
        ("grant_entitlement", "viewer", ("user entitlements",)),
        ("set_role", "plan-pro", ('group "plan-pro"',)),
    ]


def test_a_value_is_revoked_only_when_no_source_grants_it() -> None:
    """Two groups grant editor: leaving one revokes nothing; leaving both revokes it."""
    known = held("editor")
    assert actions(identity(), known, sources(EDITORS, ACME_EDITORS)) == []
    assert actions(identity(), known, sources(ACME_EDITORS)) == []
    assert actions(identity(roles=[{"value": "editor"}]), known, sources()) == []
    assert actions(identity(), known, sources(SALES)) == [("revoke_entitlement", "editor", ())]


def test_exclusive_roles_step_down_to_the_next_granted_never_through_the_lowest() -> None:
    """Enterprise and Pro granted: Enterprise; leaving Enterprise sets Pro, never Free."""
    user = identity(roles=[{"value": "plan-free"}])
    both = sources(ENTERPRISE, PRO)
    assert actions(user, held("plan-free"), both) == [
        ("set_role", "plan-enterprise", ('mapping of group "Enterprise customers"',))
    ]
    assert actions(user, held("plan-enterprise"), both) == []
    assert actions(user, held("plan-enterprise"), sources(PRO)) == [
        ("set_role", "plan-pro", ('group "plan-pro"',))
    ]
    assert actions(user, held("plan-pro"), sources(PRO)) == []


def test_an_account_keeps_its_role_when_no_source_grants_any() -> None:
    """Leaving the last group granting a plan changes nothing: no role is taken away."""
    assert actions(identity(), held("plan-pro"), sources(SALES)) == []


def test_groups_match_exact_names_or_external_ids_only() -> None:
    """ "Editor" is not "editor"; an externalId equal to a value grants it; unknown values none."""
    by_case = GroupRef("g1", "Editor")
    by_external_id = GroupRef("g2", "Billing team", "billing")
    unknown = GroupRef("g3", "superuser")
    desired = desired_state(identity(), ACME, sources(by_case, by_external_id, unknown))
    assert desired.sources == {"billing": ('group "Billing team"',)}


def test_a_mapping_as_typed_matches_a_display_name_or_an_external_id() -> None:
    """A mapping of a group not pushed yet names it by displayName or externalId."""
    rules = (
        MappingRule(GroupKind.name, "Finance", "billing"),
        MappingRule(GroupKind.name, "0a1b-object-id", "viewer"),
    )
    finance = GroupRef("g1", "Finance")
    readers = GroupRef("g2", "Readers", "0a1b-object-id")
    desired = desired_state(identity(), ACME, GroupSources((finance, readers), rules))
    assert desired.entitlements == {"billing", "viewer"}
    renamed = GroupRef("g1", "Finance EMEA")
    assert desired_state(identity(), ACME, GroupSources((renamed,), rules)).entitlements == set()


def test_groups_that_grant_nothing_are_reported() -> None:
    """Sales matches no value and no mapping; "Editor" differs from "editor" by case."""
    groups = [EDITORS, ACME_EDITORS, WRITERS, SALES, GroupRef("g1", "Editor")]
    catalogue = {e.value for e in ACME.entitlements}
    assert [g.display_name for g in granting_nothing(groups, MAPPINGS, catalogue)] == [
        "Sales",
        "Editor",
    ]


def test_a_deleted_or_inactive_identity_gets_nothing_from_its_groups() -> None:
    """Groups grant entitlements, not access: a deactivated user is deactivated."""
    known = held("editor")
    assert actions(identity(active=False), known, sources(EDITORS)) == [
        ("deactivate_user", None, ())
    ]
    deleted = identity()
    deleted.deleted_at = datetime.now(UTC)
    assert desired_state(deleted, ACME, sources(EDITORS)).entitlements == frozenset()


def test_apply_success_of_a_group_grant_records_the_value() -> None:
    """What a group grant made true is recorded like any other grant."""
    known = held()
    desired = desired_state(identity(), ACME, sources(EDITORS))
    (grant,) = plan(identity(), known, ACME, sources(EDITORS)).actions
    apply_success(grant, known, desired, ACME, None)
    assert known.entitlements == ["editor"]
