"""The plan: desired minus known, computed when the job runs, in a safe order."""

from datetime import UTC, datetime

from engine.apps.grants import GroupKind, GroupRef, GroupSources, MappingRule, granting_nothing
from engine.apps.ownership import Ownership
from engine.apps.template import load_app
from engine.planner import (
    Plan,
    PlannedAction,
    apply_success,
    attributes_pending,
    desired_state,
    plan,
    removes_access,
)
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


def test_a_create_records_only_what_it_filled_in() -> None:
    """create_sets and the empty attributes count as set; a cost centre waits for the update."""
    assert ACME.extension is not None
    urn = ACME.extension.urn
    costed = identity(schemas=["urn:ietf:params:scim:schemas:core:2.0:User", urn])
    costed.resource[urn] = {"costCenter": "CC-1"}
    for user, pending in ((identity(), False), (costed, True)):
        desired = desired_state(user, ACME)
        known = account()
        apply_success(PlannedAction("create_user"), known, desired, ACME, "u1")
        assert attributes_pending(known, desired) is pending
        assert known.attributes.get("costCenter") is None
    found = account()
    apply_success(PlannedAction("create_user"), found, desired, ACME, "u2", found=True)
    assert found.attributes == {} and attributes_pending(found, desired), (
        "an account found already there may differ"
    )


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


# Granted apart from observed; protected accounts; deprovisioning.


def adopted(**fields: object) -> AppAccount:
    """Return an account a create found already in Acme, as apply_success records it."""
    known = account()
    user = identity()
    create = PlannedAction("create_user")
    found = {"observed_status": "Active", "observed_roles": "Billing, Viewer"}
    extracted = {**found, **fields.pop("extracted", {})}  # type: ignore[dict-item]
    apply_success(
        create, known, desired_state(user, ACME), ACME, "u1", found=True, extracted=extracted
    )
    known.attributes = desired_state(user, ACME).attributes
    for name, value in fields.items():
        setattr(known, name, value)
    return known


def test_a_create_that_found_the_account_records_what_it_observed() -> None:
    """Found already there: exists, not activated by Usher, the roles it showed observed."""
    known = adopted()
    assert known.exists and known.active is None and known.observed_at is not None
    assert known.observed_active is True
    assert known.observed_entitlements == ["billing", "viewer"] and known.entitlements == []
    inactive = adopted(extracted={"observed_status": "Deactivated", "observed_roles": "None"})
    assert inactive.observed_active is False and inactive.observed_entitlements == []
    unseen = adopted(extracted={"observed_status": "", "observed_roles": ""})
    assert unseen.observed_active is None
    made = account()
    apply_success(PlannedAction("create_user"), made, desired_state(identity(), ACME), ACME, "u2")
    assert made.active is True and made.observed_at is None


def test_usher_removes_only_what_it_granted_unless_authoritative() -> None:
    """Observed Billing is kept (and noted) when no source grants it; authoritative revokes it."""
    known = adopted()
    user = identity(entitlements=[{"value": "viewer"}, {"value": "editor"}])
    result = plan(user, known, ACME)
    assert [(a.name, a.target) for a in result.actions] == [("grant_entitlement", "editor")]
    assert result.notes == ["keeps billing: found in the app, not granted by Usher"]
    apply_success(result.actions[0], known, desired_state(user, ACME), ACME, None)
    assert known.entitlements == ["editor"]
    leaving = plan(identity(), known, ACME)
    assert [(a.name, a.target) for a in leaving.actions] == [("revoke_entitlement", "editor")]
    assert leaving.notes == ["keeps billing, viewer: found in the app, not granted by Usher"]
    owner = Ownership(authoritative=True)
    assert [(a.name, a.target) for a in plan(identity(), known, ACME, ownership=owner).actions] == [
        ("revoke_entitlement", "billing"),
        ("revoke_entitlement", "editor"),
        ("revoke_entitlement", "viewer"),
    ]


def test_an_observed_higher_role_is_not_lowered_unless_authoritative() -> None:
    """Found on Enterprise, the IdP grants Pro: kept and noted; authoritative sets Pro."""
    known = adopted(extracted={"observed_roles": "Enterprise"})
    user = identity(roles=[{"value": "plan-pro"}])
    result = plan(user, known, ACME)
    assert result.actions == []
    assert "keeps plan-enterprise over plan-pro" in result.notes[0]
    owner = Ownership(authoritative=True)
    assert [a.target for a in plan(user, known, ACME, ownership=owner).actions] == ["plan-pro"]
    higher = identity(roles=[{"value": "plan-enterprise"}])
    assert plan(higher, known, ACME).actions == [], "already held, as observed"


def test_an_account_usher_did_not_activate_is_deactivated_only_when_authoritative() -> None:
    """active=false on a found account: noted; authoritative deactivates; granted always does."""
    known = adopted()
    result = plan(identity(active=False), known, ACME)
    assert result.actions == [] and "not deactivated" in result.notes[0]
    owner = Ownership(authoritative=True)
    assert names_of(plan(identity(active=False), known, ACME, ownership=owner)) == [
        ("deactivate_user", None)
    ]
    found_inactive = adopted(extracted={"observed_status": "Deactivated"})
    assert names_of(plan(identity(), found_inactive, ACME)) == [("reactivate_user", None)]


def names_of(result: Plan) -> list[tuple[str, str | None]]:
    """Return a plan's actions with their targets."""
    return [(a.name, a.target) for a in result.actions]


def test_active_false_keeps_the_entitlements_for_reactivation() -> None:
    """Deactivating records nothing lost; reactivating needs no grant again."""
    known = held("editor", "plan-pro")
    user = identity(roles=[{"value": "editor"}, {"value": "plan-pro"}])
    (deactivate,) = plan(identity(active=False), known, ACME).actions
    apply_success(deactivate, known, desired_state(user, ACME), ACME, None)
    assert known.active is False and known.entitlements == ["editor", "plan-pro"]
    assert names_of(plan(user, known, ACME)) == [("reactivate_user", None)]


def test_a_scim_delete_deactivates_and_revokes_what_usher_granted() -> None:
    """Deleted: deactivate, revoke Usher's grants; observed values and the plan are kept."""
    deleted = identity()
    deleted.deleted_at = datetime.now(UTC)
    known = held("editor", "plan-pro")
    known.observed_at, known.observed_entitlements = datetime.now(UTC), ["billing"]
    result = plan(deleted, known, ACME)
    assert names_of(result) == [("deactivate_user", None), ("revoke_entitlement", "editor")]
    assert result.notes == [
        "keeps billing: found in the app, not granted by Usher",
        "keeps plan-pro: an exclusive role is replaced, never revoked",
    ]


def test_delete_user_runs_only_where_declared_and_opted_in() -> None:
    """Opted in and declared (Acme): delete_user; not declared: deactivate and revoke, noted."""
    deleted = identity()
    deleted.deleted_at = datetime.now(UTC)
    opted = Ownership(delete_users=True)
    deleting = ACME
    assert "delete_user" in ACME.actions
    known = held("editor")
    assert names_of(plan(deleted, known, deleting, ownership=opted)) == [("delete_user", None)]
    assert names_of(plan(deleted, known, deleting)) == [
        ("deactivate_user", None),
        ("revoke_entitlement", "editor"),
    ]
    keeping = ACME.model_copy(update={"actions": [a for a in ACME.actions if a != "delete_user"]})
    undeclared = plan(deleted, known, keeping, ownership=opted)
    assert names_of(undeclared) == [("deactivate_user", None), ("revoke_entitlement", "editor")]
    assert undeclared.notes == ["not deleted: acme has no delete_user flow"]
    found = adopted()
    assert names_of(plan(deleted, found, deleting, ownership=opted)) == []
    (delete,) = plan(deleted, known, deleting, ownership=opted).actions
    apply_success(delete, known, desired_state(deleted, ACME), ACME, None)
    assert not known.exists and known.entitlements == [] and known.app_key is None


def test_protected_accounts_get_no_action_and_the_plan_says_why() -> None:
    """The service account and listed break-glass admins, by userName or email, any case."""
    guard = Ownership(service_account="Admin@Acme.test", protected=frozenset({"root@acme.test"}))
    service = identity(userName="admin@acme.test", active=False)
    service.user_name = "admin@acme.test"
    result = plan(service, held("editor"), ACME, ownership=guard)
    assert result.actions == [] and result.protected and "service account" in result.protected
    breakglass = identity(emails=[{"value": "ROOT@acme.test", "primary": True}])
    result = plan(breakglass, account(), ACME, ownership=guard)
    assert result.actions == [] and result.notes == [
        "protected: root@acme.test is on the integration's protected accounts"
    ]
    assert names_of(plan(identity(), account(), ACME, ownership=guard))[0] == ("create_user", None)


def test_a_grant_found_already_on_an_adopted_account_is_observed() -> None:
    """On an account found in the app, an "already" grant is not Usher's; on its own it is."""
    known = adopted()
    grant = PlannedAction(
        "grant_entitlement", next(e for e in ACME.entitlements if e.value == "editor")
    )
    apply_success(grant, known, desired_state(identity(), ACME), ACME, None, found=True)
    assert "editor" in known.observed_entitlements and known.entitlements == []
    mine = held()
    apply_success(grant, mine, desired_state(identity(), ACME), ACME, None, found=True)
    assert mine.entitlements == ["editor"]


def test_what_takes_access_away_is_what_the_guard_counts() -> None:
    """Deactivate, delete and revoke take access away; so does a set_role to a lower rank,
    from a role Usher granted or one it found; creates, grants and a higher role do not."""
    by_value = {e.value: e for e in ACME.entitlements}
    enterprise = account(exists=True, active=True, entitlements=["plan-enterprise", "editor"])
    found = account(exists=True, observed_entitlements=["plan-pro"])
    removing = [
        PlannedAction("deactivate_user"),
        PlannedAction("delete_user"),
        PlannedAction("revoke_entitlement", by_value["editor"]),
    ]
    assert all(removes_access(a, enterprise, ACME) for a in removing)
    lowering = PlannedAction("set_role", by_value["plan-free"])
    assert removes_access(lowering, enterprise, ACME)
    assert removes_access(lowering, found, ACME)
    keeping = [
        PlannedAction("create_user"),
        PlannedAction("update_user"),
        PlannedAction("reactivate_user"),
        PlannedAction("grant_entitlement", by_value["viewer"]),
        PlannedAction("set_role", by_value["plan-enterprise"]),
    ]
    assert not any(removes_access(a, enterprise, ACME) for a in keeping)
    assert not removes_access(lowering, account(exists=True), ACME)
