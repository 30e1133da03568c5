"""Microsoft Entra ID's conversations, replayed over HTTP, in both of its PATCH dialects."""

import uuid

import pytest

from engine.storage.db import Database
from fixtures.idp import filled, sample
from tests.scim.conftest import (
    ENTERPRISE,
    LIST_SCHEMA,
    PATCH_SCHEMA,
    SCIM_JSON,
    Scim,
    group_row,
    identity_row,
    member_ids,
    queued_jobs,
    settle,
)

DIALECTS = ["default", "aad_opt"]
"""Entra's default provisioning job, and the RFC-style one of `?aadOptscim062020`."""


def entra_user(scim: Scim, upn: str, given: str = "Jo", family: str = "Young") -> dict:
    """Create a user as Entra does and return it."""
    values = {"object_id": str(uuid.uuid4()), "upn": upn, "given": given, "family": family}
    return scim.ok("POST", "/Users", filled("entra", "create_user", **values))


def empty_list(body: dict) -> bool:
    """Tell whether a body is a ListResponse with no resources."""
    return (
        body["schemas"] == [LIST_SCHEMA] and body["totalResults"] == 0 and not body.get("Resources")
    )


async def test_connection_test_and_matching_filters(scim: Scim) -> None:
    """Test Connection's random GUID gets 200 and an empty list; every matching filter works."""
    guid = str(uuid.uuid4())
    for attribute in ("userName", "externalId", "id"):
        probe = scim.call("GET", "/Users", params={"filter": f'{attribute} eq "{guid}"'})
        assert probe.status_code == 200 and probe.headers["content-type"].startswith(SCIM_JSON)
        assert empty_list(probe.json())
    groups = {"excludedAttributes": "members", "filter": f'displayName eq "{guid}"'}
    assert empty_list(scim.ok("GET", "/Groups", params=groups))

    user = entra_user(scim, "Jo.Young@contoso.example")
    object_id = user["externalId"]
    for scim_filter in (
        'userName eq "jo.young@CONTOSO.example"',
        f'externalId eq "{object_id}"',
        f"externalId eq {object_id}",
        'emails[type eq "work"].value eq "Jo.Young@contoso.example"',
        f'userName eq "Jo.Young@contoso.example" and externalId eq "{object_id}"',
    ):
        found = scim.ok("GET", "/Users", params={"filter": scim_filter})
        assert [u["id"] for u in found["Resources"]] == [user["id"]], scim_filter
    wrong_case = scim.ok("GET", "/Users", params={"filter": f'externalId eq "{object_id.upper()}"'})
    assert wrong_case["totalResults"] == 0, "externalId is case-exact"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_update_disable_and_enable_in_each_dialect(
    scim: Scim, scim_db: Database, dialect: str
) -> None:
    """Several attributes in one PATCH, then disable and enable, as each Entra job sends them."""
    user = entra_user(scim, "max.mustermann@contoso.example", "Max", "Mustermann")
    values = {
        "given": "Maximilian",
        "family": "Muster",
        "email": "max.muster@contoso.example",
        "employee_number": "42",
    }
    updated = scim.ok(
        "PATCH", f"/Users/{user['id']}", filled("entra", f"update_{dialect}", **values)
    )

    assert updated["displayName"] == "Maximilian Muster"
    assert (
        updated["name"]["givenName"] == "Maximilian" and updated["name"]["familyName"] == "Muster"
    )
    assert updated["name"]["formatted"] == "Max Mustermann"
    assert [(e["type"], e["value"]) for e in updated["emails"]] == [
        ("work", "max.muster@contoso.example")
    ]
    assert updated[ENTERPRISE] == {"employeeNumber": "42", "department": "Tour Operations"}
    stored = await identity_row(scim_db, user["id"])
    assert stored.display_name == "Maximilian Muster"
    assert stored.resource[ENTERPRISE]["employeeNumber"] == "42"

    disabled = scim.ok("PATCH", f"/Users/{user['id']}", sample("entra", f"disable_{dialect}"))
    assert disabled["active"] is False
    assert not (await identity_row(scim_db, user["id"])).active
    listed = scim.ok("GET", "/Users", params={"filter": f'externalId eq "{user["externalId"]}"'})
    assert [u["active"] for u in listed["Resources"]] == [False]

    enabled = scim.ok("PATCH", f"/Users/{user['id']}", sample("entra", "enable_default"))
    assert enabled["active"] is True and (await identity_row(scim_db, user["id"])).active


async def test_add_on_a_filtered_email_path_creates_the_work_email(
    scim: Scim, scim_db: Database
) -> None:
    """`Add emails[type eq "work"].value` on a user without one creates it, not a 400."""
    user = scim.user("no.mail@contoso.example")
    patch = filled("entra", "add_work_email", email="first.mail@contoso.example")

    patched = scim.ok("PATCH", f"/Users/{user['id']}", patch)

    assert patched["emails"] == [{"type": "work", "value": "first.mail@contoso.example"}]
    stored = await identity_row(scim_db, user["id"])
    assert stored.resource["emails"] == [{"type": "work", "value": "first.mail@contoso.example"}]


async def test_manager_is_set_changed_and_cleared(scim: Scim, scim_db: Database) -> None:
    """A bare manager id is stored and returned as `{"value": id}`; an empty Replace clears it."""
    boss, other = (
        entra_user(scim, "boss@contoso.example"),
        entra_user(scim, "other@contoso.example"),
    )
    user = entra_user(scim, "report@contoso.example")
    path = f"/Users/{user['id']}"

    scim.ok("PATCH", path, filled("entra", "set_manager", manager=boss["id"]))
    assert scim.ok("GET", path)[ENTERPRISE]["manager"] == {"value": boss["id"]}
    stored = await identity_row(scim_db, user["id"])
    assert stored.resource[ENTERPRISE]["manager"] == {"value": boss["id"]}

    changed = scim.ok("PATCH", path, filled("entra", "set_manager", manager=other["id"]))
    assert changed[ENTERPRISE]["manager"] == {"value": other["id"]}

    cleared = scim.ok("PATCH", path, sample("entra", "clear_manager"))
    assert "manager" not in cleared[ENTERPRISE]
    assert "manager" not in (await identity_row(scim_db, user["id"])).resource[ENTERPRISE]
    scim.ok("PATCH", path, sample("entra", "clear_manager"))

    body = filled(
        "entra", "create_user", object_id="x1", upn="new@contoso.example", given="N", family="E"
    )
    body[ENTERPRISE]["manager"] = boss["id"]
    assert scim.ok("POST", "/Users", body)[ENTERPRISE]["manager"] == {"value": boss["id"]}


async def test_null_update_unsets_with_empty_strings_and_with_nulls(
    scim: Scim, scim_db: Database
) -> None:
    """Entra's null-update test: empty strings, then nulls; the attributes read back unset."""
    user = entra_user(scim, "null.update@contoso.example", "Nell", "Update")
    path = f"/Users/{user['id']}"
    additions = [
        {"op": "Add", "path": "title", "value": "Engineer"},
        {"op": "Add", "path": "nickName", "value": "Nelly"},
    ]
    scim.ok("PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": additions})

    emptied = scim.ok("PATCH", path, sample("entra", "null_update_empty"))
    assert {"displayName", "title"}.isdisjoint(emptied)
    assert "department" not in emptied[ENTERPRISE]
    nulled = scim.ok("PATCH", path, sample("entra", "null_update_null"))
    assert "nickName" not in nulled and "givenName" not in nulled["name"]
    assert ENTERPRISE not in nulled
    stored = (await identity_row(scim_db, user["id"])).resource
    assert {"displayName", "title", "nickName"}.isdisjoint(stored)
    assert stored["name"] == {"formatted": "Nell Update", "familyName": "Update"}
    assert not stored.get(ENTERPRISE)
    assert stored["userName"] == "null.update@contoso.example"


async def test_app_roles_sent_as_json_strings_are_opened(scim: Scim, scim_db: Database) -> None:
    """A role whose value is a JSON object in a string is stored as that object's value."""
    user = entra_user(scim, "roles@contoso.example")
    await settle(scim_db, scim.id)

    patch = filled("entra", "add_app_roles", role="plan-pro", role_name="Pro")
    patched = scim.ok("PATCH", f"/Users/{user['id']}", patch)

    assert patched["roles"] == [{"value": "plan-pro", "display": "Pro"}]
    stored = await identity_row(scim_db, user["id"])
    assert stored.resource["roles"] == [{"value": "plan-pro", "display": "Pro"}]
    assert [j.identity_id for j in await queued_jobs(scim_db, scim.id)] == [user["id"]]


async def test_delete_hides_the_user_and_queues_its_deprovisioning(
    scim: Scim, scim_db: Database
) -> None:
    """DELETE answers 204; the user is gone from SCIM, kept as a row, and dirty."""
    user = entra_user(scim, "leaver@contoso.example")
    await settle(scim_db, scim.id)

    deleted = scim.call("DELETE", f"/Users/{user['id']}")

    assert deleted.status_code == 204 and not deleted.content
    assert scim.call("GET", f"/Users/{user['id']}").status_code == 404
    assert (
        scim.ok("GET", "/Users", params={"filter": 'userName eq "leaver@contoso.example"'})[
            "totalResults"
        ]
        == 0
    )
    assert (await identity_row(scim_db, user["id"])).deleted_at is not None
    assert [j.identity_id for j in await queued_jobs(scim_db, scim.id)] == [user["id"]]
    assert entra_user(scim, "LEAVER@contoso.example")["id"] != user["id"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_group_provisioning(scim: Scim, scim_db: Database, dialect: str) -> None:
    """Create without members, look up without members, add two, remove exactly one, rename."""
    first, second = entra_user(scim, "g1@contoso.example"), entra_user(scim, "g2@contoso.example")
    object_id = str(uuid.uuid4())
    group = scim.ok(
        "POST", "/Groups", filled("entra", "create_group", object_id=object_id, name="Sales")
    )
    gid = group["id"]
    assert group["externalId"] == object_id and group["displayName"] == "Sales"

    lookup = {"excludedAttributes": "members", "filter": 'displayName eq "Sales"'}
    assert [g["id"] for g in scim.ok("GET", "/Groups", params=lookup)["Resources"]] == [gid]

    added = scim.call(
        "PATCH",
        f"/Groups/{gid}",
        filled("entra", "add_members", first=first["id"], second=second["id"]),
    )
    assert added.status_code == 204 and not added.content
    assert await member_ids(scim_db, gid) == {first["id"], second["id"]}
    slim = scim.ok("GET", f"/Groups/{gid}", params={"excludedAttributes": "members"})
    assert "members" not in slim and slim["displayName"] == "Sales"
    probe = {
        "filter": f'id eq "{gid}" and members eq "{first["id"]}"',
        "excludedAttributes": "members",
    }
    probed = scim.ok("GET", "/Groups", params=probe)
    assert probed["totalResults"] == 1 and "members" not in probed["Resources"][0]

    removal = filled("entra", f"remove_member_{dialect}", member=first["id"])
    assert scim.call("PATCH", f"/Groups/{gid}", removal).status_code == 204
    assert await member_ids(scim_db, gid) == {second["id"]}
    assert [m["value"] for m in scim.ok("GET", f"/Groups/{gid}")["members"]] == [second["id"]]

    renamed = scim.call(
        "PATCH", f"/Groups/{gid}", filled("entra", "rename_group", name="Sales EMEA")
    )
    assert renamed.status_code == 204
    assert (await group_row(scim_db, gid)).display_name == "Sales EMEA"
    assert await member_ids(scim_db, gid) == {second["id"]}

    assert scim.call("DELETE", f"/Groups/{gid}").status_code == 204
    assert (
        scim.call("GET", f"/Groups/{gid}", params={"excludedAttributes": "members"}).status_code
        == 404
    )
