"""Dirty-marking: a change the app's flows act on queues one job; anything else queues none."""

from engine.apps.template import load_app
from engine.storage.db import Database
from fixtures.idp import filled, sample
from tests.harness import ROOT
from tests.scim.conftest import (
    ENTERPRISE,
    GROUP_SCHEMA,
    PATCH_SCHEMA,
    Scim,
    identity_row,
    member_ids,
    queued_jobs,
    settle,
)


def patch(*operations: dict) -> dict:
    """Return a PatchOp body."""
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def test_acme_watches_names_and_email_only() -> None:
    """The template these tests rely on: flows use email and names, not title or department."""
    template = load_app(ROOT / "flows", "acme")
    assert {"email", "first_name", "last_name"} <= template.used_attributes
    assert {"title", "department", "nick_name"}.isdisjoint(template.used_attributes)
    assert template.entitlements


async def test_repeated_patches_create_no_job(scim: Scim, scim_db: Database) -> None:
    """Entra re-sends the same PATCH every cycle: answered 200, nothing marked."""
    values = {"object_id": "o-1", "upn": "same@contoso.example", "given": "Sam", "family": "Same"}
    user = scim.ok("POST", "/Users", filled("entra", "create_user", **values))
    same = {**values, "email": "same@contoso.example", "employee_number": "701984"}
    resends = [
        filled("entra", "update_aad_opt", **same),
        filled("entra", "update_default", **same),
        sample("entra", "enable_default"),
    ]
    await settle(scim_db, scim.id)
    before = await identity_row(scim_db, user["id"])

    for body in resends * 3:
        assert scim.call("PATCH", f"/Users/{user['id']}", body).status_code == 200

    after = await identity_row(scim_db, user["id"])
    assert await queued_jobs(scim_db, scim.id) == []
    assert (after.generation, after.version) == (before.generation, before.version)


async def test_a_change_no_flow_uses_marks_nothing(scim: Scim, scim_db: Database) -> None:
    """title, nickName, department: stored, versioned, but no job and no new generation."""
    user = scim.user("quiet@example.com", name={"givenName": "Qui", "familyName": "Et"})
    await settle(scim_db, scim.id)
    before = await identity_row(scim_db, user["id"])

    scim.ok(
        "PATCH",
        f"/Users/{user['id']}",
        patch(
            {"op": "add", "path": "title", "value": "Manager"},
            {"op": "add", "value": {"nickName": "Q", f"{ENTERPRISE}:department": "Ops"}},
        ),
    )

    after = await identity_row(scim_db, user["id"])
    assert after.resource["title"] == "Manager" and after.version == before.version + 1
    assert after.generation == before.generation
    assert await queued_jobs(scim_db, scim.id) == []


async def test_a_change_a_flow_uses_marks_the_user_once(scim: Scim, scim_db: Database) -> None:
    """A new family name, then a new role: one queued job for the user, its generation bumped."""
    user = scim.user("loud@example.com", name={"givenName": "Lou", "familyName": "D"})
    await settle(scim_db, scim.id)
    before = await identity_row(scim_db, user["id"])

    scim.ok(
        "PATCH",
        f"/Users/{user['id']}",
        patch({"op": "replace", "path": "name.familyName", "value": "Dee"}),
    )
    scim.ok(
        "PATCH",
        f"/Users/{user['id']}",
        patch({"op": "add", "path": "roles", "value": [{"value": "plan-pro"}]}),
    )

    jobs = await queued_jobs(scim_db, scim.id)
    assert [j.identity_id for j in jobs] == [user["id"]]
    assert (await identity_row(scim_db, user["id"])).generation == before.generation + 2


async def test_a_group_change_marks_the_group_not_each_member(
    scim: Scim, scim_db: Database
) -> None:
    """Sixty members joining in one PATCH: one group job, no identity job inside the request."""
    members = [scim.user(f"member-{n}@example.com")["id"] for n in range(60)]
    group = scim.ok("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Everyone"})
    await settle(scim_db, scim.id)

    added = scim.call(
        "PATCH",
        f"/Groups/{group['id']}",
        patch({"op": "add", "path": "members", "value": [{"value": m} for m in members]}),
    )

    assert added.status_code == 204
    assert await member_ids(scim_db, group["id"]) == set(members)
    jobs = await queued_jobs(scim_db, scim.id)
    assert [(j.group_id, j.identity_id) for j in jobs] == [(group["id"], None)]

    await settle(scim_db, scim.id)
    renamed = patch({"op": "replace", "path": "displayName", "value": "All of us"})
    assert scim.call("PATCH", f"/Groups/{group['id']}", renamed).status_code == 204
    assert await queued_jobs(scim_db, scim.id) == [], "a rename changes no one's access"
