"""Okta's conversations, replayed over HTTP: its SPEC test, assignment, profile push, group push."""

import time
import uuid

from engine.storage.db import Database
from fixtures.idp import filled, okta_user, sample
from tests.scim.conftest import (
    ERROR_SCHEMA,
    LIST_SCHEMA,
    SCIM_JSON,
    USER_SCHEMA,
    Scim,
    group_row,
    identity_row,
    member_ids,
    queued_jobs,
    settle,
)

OKTA = {"Accept": SCIM_JSON, "User-Agent": "OKTA SCIM Integration"}


def assert_full_user(user: dict) -> None:
    """Check the fields the SPEC test requires of a listed or read user."""
    assert user["id"] and user["userName"] and user["emails"][0]["value"]
    assert user["name"]["familyName"] and user["name"]["givenName"]
    assert user["active"] in (True, False)


def assert_error(body: dict, status: str) -> None:
    """Check a SCIM Error body with a string status and a detail."""
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == status and body["detail"]


async def test_okta_spec_test_sequence(scim: Scim, scim_db: Database) -> None:
    """The twelve requests of Okta's SCIM 2.0 SPEC test, with its assertions, in order."""
    scim.ok("POST", "/Users", okta_user("existing.user@example.com", "Eve", "Existing"))

    listed = scim.call("GET", "/Users", params={"count": "1", "startIndex": "1"}, headers=OKTA)
    page = listed.json()
    assert listed.status_code == 200 and LIST_SCHEMA in page["schemas"]
    assert all(type(page[k]) is int for k in ("itemsPerPage", "startIndex", "totalResults"))
    assert page["itemsPerPage"] == 1
    first = page["Resources"][0]
    assert_full_user(first)

    read = scim.call("GET", f"/Users/{first['id']}", headers=OKTA)
    assert read.status_code == 200 and read.json()["id"] == first["id"]
    assert_full_user(read.json())

    for probe in ("invalid-user@example.com", f"{uuid.uuid4().hex}@example.com"):
        none = scim.call("GET", "/Users", params={"filter": f'userName eq "{probe}"'}, headers=OKTA)
        assert none.status_code == 200 and none.json()["totalResults"] == 0
        assert LIST_SCHEMA in none.json()["schemas"]

    unknown = scim.call("GET", f"/Users/{uuid.uuid4()}", headers=OKTA)
    assert unknown.status_code == 404
    assert_error(unknown.json(), "404")

    values = {"user_name": "Spec.Tester@example.com", "given": "Spec", "family": "Tester"}
    created = scim.call(
        "POST",
        "/Users",
        filled("okta", "spec_create_user", **values),
        headers={**OKTA, "Content-Type": "application/json"},
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["active"] is True and user["id"] and USER_SCHEMA in user["schemas"]
    assert (user["userName"], user["name"]["givenName"], user["name"]["familyName"]) == (
        "Spec.Tester@example.com",
        "Spec",
        "Tester",
    )
    assert created.headers["location"] == user["meta"]["location"]
    again = scim.ok("GET", f"/Users/{user['id']}")
    assert again["userName"] == "Spec.Tester@example.com"
    assert again["name"] == {"givenName": "Spec", "familyName": "Tester"}

    duplicate = scim.call(
        "POST", "/Users", filled("okta", "spec_create_user", **values), headers=OKTA
    )
    assert duplicate.status_code == 409
    assert_error(duplicate.json(), "409")
    assert duplicate.json()["scimType"] == "uniqueness"

    capitals = {"filter": 'userName eq "SPEC.TESTER@EXAMPLE.COM"'}
    found = scim.call("GET", "/Users", params=capitals, headers=OKTA)
    assert found.status_code == 200
    assert [u["id"] for u in found.json()["Resources"]] == [user["id"]]

    started = time.monotonic()
    groups = scim.call("GET", "/Groups", headers=OKTA)
    assert groups.status_code == 200 and time.monotonic() - started < 0.6

    refused = scim.call(
        "GET", "/Users", params=capitals, headers={**OKTA, "Authorization": "non-token"}
    )
    assert refused.status_code == 401
    assert_error(refused.json(), "401")

    missing = scim.call("GET", "/Users/00919288221112222", headers=OKTA)
    assert missing.status_code == 404
    assert_error(missing.json(), "404")

    stored = await identity_row(scim_db, user["id"])
    assert (stored.user_name, stored.user_name_key) == (
        "Spec.Tester@example.com",
        "spec.tester@example.com",
    )


async def test_assign_push_profile_deactivate_reactivate(scim: Scim, scim_db: Database) -> None:
    """Okta's CRUD test: assign, push a profile by GET+PUT, unassign, reassign; state follows."""
    connection = scim.ok("GET", "/Users", params={"startIndex": "1", "count": "2"})
    assert connection["totalResults"] == 0 and connection["startIndex"] == 1
    lookup = {"filter": 'userName eq "ann.okta@example.com"', "startIndex": "1", "count": "100"}
    assert scim.ok("GET", "/Users", params=lookup)["totalResults"] == 0

    created = scim.ok("POST", "/Users", okta_user("ann.okta@example.com", "Ann", "Okta"))
    assert "password" not in created and "groups" not in created
    stored = await identity_row(scim_db, created["id"])
    assert stored.active and "password" not in stored.resource and "groups" not in stored.resource
    assert [j.identity_id for j in await queued_jobs(scim_db, scim.id)] == [created["id"]]
    await settle(scim_db, scim.id)

    current = scim.ok("GET", f"/Users/{created['id']}")
    put = filled(
        "okta",
        "put_user",
        id=current["id"],
        user_name="ann.okta@example.com",
        given="Annie",
        family="Okta",
    )
    pushed = scim.ok("PUT", f"/Users/{created['id']}", put)
    assert pushed["name"]["givenName"] == "Annie" and pushed["active"] is True
    assert "password" not in pushed and "groups" not in pushed
    stored = await identity_row(scim_db, created["id"])
    assert stored.resource["name"]["givenName"] == "Annie" and stored.active
    assert len(await queued_jobs(scim_db, scim.id)) == 1
    await settle(scim_db, scim.id)

    scim.ok("PUT", f"/Users/{created['id']}", put)
    assert await queued_jobs(scim_db, scim.id) == []

    deactivated = scim.ok("PATCH", f"/Users/{created['id']}", sample("okta", "deactivate"))
    assert deactivated["active"] is False
    assert not (await identity_row(scim_db, created["id"])).active
    assert len(await queued_jobs(scim_db, scim.id)) == 1
    await settle(scim_db, scim.id)

    scim.ok("PUT", f"/Users/{created['id']}", put)
    assert not (await identity_row(scim_db, created["id"])).active
    by_name = scim.ok("GET", "/Users", params={"filter": 'userName eq "ANN.OKTA@example.com"'})
    assert [u["active"] for u in by_name["Resources"]] == [False]
    assert scim.ok("GET", f"/Users/{created['id']}")["active"] is False

    reactivated = scim.ok("PATCH", f"/Users/{created['id']}", sample("okta", "reactivate"))
    assert reactivated["active"] is True
    assert (await identity_row(scim_db, created["id"])).active
    assert len(await queued_jobs(scim_db, scim.id)) == 1


async def test_custom_attributes_roles_and_entitlements_are_kept(
    scim: Scim, scim_db: Database
) -> None:
    """Profile Editor attributes under any URN, `roles` as strings: stored and echoed."""
    urn = "urn:ietf:params:scim:schemas:extension:acmecorp:2.0:User"
    body = filled(
        "okta", "create_user_custom", user_name="cy.custom@example.com", given="Cy", family="Cu"
    )
    created = scim.ok("POST", "/Users", body)
    assert created["roles"] == [{"value": "plan-pro"}]
    assert created["entitlements"] == [
        {"value": "editor", "display": "Editor", "type": "Entitlement"}
    ]
    assert created[urn] == {"costCenter": "CC-42", "badge": "B7"} and urn in created["schemas"]
    stored = await identity_row(scim_db, created["id"])
    assert stored.resource[urn] == {"costCenter": "CC-42", "badge": "B7"}
    assert stored.resource["roles"] == [{"value": "plan-pro"}]
    await settle(scim_db, scim.id)

    put = {**body, "id": created["id"], urn: {"costCenter": "CC-43"}, "roles": ["plan-free"]}
    replaced = scim.ok("PUT", f"/Users/{created['id']}", put)
    assert replaced[urn] == {"costCenter": "CC-43"}
    assert replaced["roles"] == [{"value": "plan-free"}]
    assert scim.ok("GET", f"/Users/{created['id']}")[urn] == {"costCenter": "CC-43"}
    assert len(await queued_jobs(scim_db, scim.id)) == 1, "a role change needs a job"


async def test_import_pages_with_a_fixed_stride_miss_no_one(scim: Scim) -> None:
    """Okta adds the count it asked for to startIndex: pages are full, stable, and disjoint."""
    for n in range(7):
        scim.user(f"page-{n}@example.com", active=n % 2 == 0)
    every = [u["id"] for u in scim.ok("GET", "/Users")["Resources"]]
    assert len(every) == 7

    for count in (2, 3, 100):
        seen: list[str] = []
        for start in range(1, 8, count):
            page = scim.ok("GET", "/Users", params={"startIndex": str(start), "count": str(count)})
            assert (page["startIndex"], page["totalResults"]) == (start, 7)
            assert page["itemsPerPage"] == min(count, 7 - start + 1)
            seen += [u["id"] for u in page["Resources"]]
        assert seen == every
    past = scim.ok("GET", "/Users", params={"startIndex": "8", "count": "100"})
    assert past["totalResults"] == 7 and past["itemsPerPage"] == 0


async def test_group_push_adds_renames_removes_and_replaces_members(
    scim: Scim, scim_db: Database
) -> None:
    """Group Push: create, add, rename with membership, full replace, wizard PUT, delete."""
    alice, bob, carol = (scim.user(f"{n}@example.com") for n in ("alice", "bob", "carol"))
    await settle(scim_db, scim.id)

    group = scim.ok("POST", "/Groups", filled("okta", "create_group", name="Engineering"))
    assert group["displayName"] == "Engineering" and "members" not in group
    by_name = scim.ok("GET", "/Groups", params={"filter": 'displayName eq "engineering"'})
    assert [g["id"] for g in by_name["Resources"]] == [group["id"]]
    gid = group["id"]

    add = filled(
        "okta",
        "add_members",
        first=alice["id"],
        first_name="alice@example.com",
        second=bob["id"],
        second_name="bob@example.com",
    )
    assert scim.call("PATCH", f"/Groups/{gid}", add).status_code == 204
    members = scim.ok("GET", f"/Groups/{gid}")["members"]
    assert {(m["value"], m["type"]) for m in members} == {
        (alice["id"], "User"),
        (bob["id"], "User"),
    }
    assert await member_ids(scim_db, gid) == {alice["id"], bob["id"]}

    push = filled(
        "okta",
        "group_push",
        group=gid,
        name="Engineering EU",
        leaving=bob["id"],
        joining=carol["id"],
        joining_name="carol@example.com",
    )
    assert scim.call("PATCH", f"/Groups/{gid}", push).status_code == 204
    read = scim.ok("GET", f"/Groups/{gid}")
    assert read["displayName"] == "Engineering EU"
    assert {m["value"] for m in read["members"]} == {alice["id"], carol["id"]}
    assert (await group_row(scim_db, gid)).display_name == "Engineering EU"

    full = filled("okta", "group_replace_members", member=bob["id"], member_name="bob")
    assert scim.call("PATCH", f"/Groups/{gid}", full).status_code == 204
    assert await member_ids(scim_db, gid) == {bob["id"]}
    empty = {**full, "Operations": [{"op": "replace", "path": "members", "value": []}]}
    assert scim.call("PATCH", f"/Groups/{gid}", empty).status_code == 204
    assert await member_ids(scim_db, gid) == set()
    assert "members" not in scim.ok("GET", f"/Groups/{gid}")

    wizard = filled(
        "okta", "put_group", group=gid, name="Engineering", member=carol["id"], member_name="c"
    )
    assert [m["value"] for m in scim.ok("PUT", f"/Groups/{gid}", wizard)["members"]] == [
        carol["id"]
    ]
    assert await member_ids(scim_db, gid) == {carol["id"]}

    jobs = await queued_jobs(scim_db, scim.id)
    assert [(j.group_id, j.identity_id) for j in jobs] == [(gid, None)]

    deleted = scim.call("DELETE", f"/Groups/{gid}")
    assert deleted.status_code == 204 and not deleted.content
    assert scim.call("GET", f"/Groups/{gid}").status_code == 404
    assert scim.ok("GET", "/Groups")["totalResults"] == 0
    assert (await group_row(scim_db, gid)).deleted_at is not None
    assert await member_ids(scim_db, gid) == {carol["id"]}
    assert scim.ok("POST", "/Groups", filled("okta", "create_group", name="engineering"))["id"]
