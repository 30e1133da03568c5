"""Errors: always the SCIM Error schema with the right scimType, and nothing half-stored."""

import uuid

import pytest

from engine.constants import SCIM_MAX_BODY_BYTES
from engine.storage.db import Database
from tests.scim.conftest import (
    ERROR_SCHEMA,
    PATCH_SCHEMA,
    SCIM_JSON,
    USER_SCHEMA,
    Scim,
    ScimServer,
    identity_row,
    new_integration,
    queued_jobs,
)


def assert_scim_error(response: object, status: int, scim_type: str | None = None) -> dict:
    """Check a response is a SCIM error of a status and scimType; return its body."""
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith(SCIM_JSON)  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == str(status)
    assert body.get("scimType") == scim_type and body["detail"]
    return body


def patch(*operations: dict) -> dict:
    """Return a PatchOp body."""
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


async def users_of(db: Database, scim: Scim) -> int:
    """Count the users an integration's SCIM endpoint lists."""
    return scim.ok("GET", "/Users")["totalResults"]


USER = b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]'
GROUP = b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]'


@pytest.mark.parametrize(
    ("body", "scim_type", "mentions"),
    [
        (b'{"userName": ', "invalidSyntax", ""),
        (b"[1, 2]", "invalidSyntax", ""),
        (GROUP + b', "userName": "w"}', "invalidSyntax", "schemas"),
        (USER + b"}", "invalidValue", "userName"),
        (USER + b', "userName": "w", "emails": "x"}', "invalidValue", "emails"),
        (USER + b', "userName": "w", "active": {}}', "invalidValue", "active"),
    ],
)
async def test_bad_bodies_are_400_and_store_nothing(
    scim: Scim, scim_db: Database, body: bytes, scim_type: str, mentions: str
) -> None:
    """Broken JSON, wrong schemas, missing or mistyped attributes: 400, nothing stored."""
    error = assert_scim_error(scim.call("POST", "/Users", content=body), 400, scim_type)

    assert mentions in error["detail"]
    assert await users_of(scim_db, scim) == 0
    assert await queued_jobs(scim_db, scim.id) == []


def test_json_is_accepted_and_other_media_types_are_415(scim: Scim) -> None:
    """Okta POSTs application/json; text/plain is refused with a SCIM 415."""
    body = {"schemas": [USER_SCHEMA], "userName": "json@example.com"}
    accepted = scim.call("POST", "/Users", body, headers={"Content-Type": "application/json"})
    assert accepted.status_code == 201
    assert accepted.headers["content-type"].startswith(SCIM_JSON)
    other = {**body, "userName": "text@example.com"}
    refused = scim.call("POST", "/Users", other, headers={"Content-Type": "text/plain"})
    assert_scim_error(refused, 415)


async def test_oversized_bodies_are_413_and_store_nothing(scim: Scim, scim_db: Database) -> None:
    """A body over the limit is refused, whether or not it declares its length."""
    padding = "x" * SCIM_MAX_BODY_BYTES
    body = {"schemas": [USER_SCHEMA], "userName": "big@example.com", "nickName": padding}
    assert_scim_error(scim.call("POST", "/Users", body), 413)

    def chunks() -> object:
        yield b'{"schemas": ["' + USER_SCHEMA.encode() + b'"], "userName": "big@example.com",'
        yield b'"nickName": "' + padding.encode() + b'"}'

    streamed = scim.client.post(
        f"{scim.url}/Users",
        content=chunks(),
        headers={"Authorization": f"Bearer {scim.token}", "Content-Type": SCIM_JSON},
    )
    assert_scim_error(streamed, 413)
    assert await users_of(scim_db, scim) == 0


def test_filters_on_unknown_attributes_are_invalid_not_everything(scim: Scim) -> None:
    """`badAttr eq "x"` is 400 invalidFilter on Users and Groups; so is broken syntax."""
    scim.user("someone@example.com")
    for endpoint in ("/Users", "/Groups"):
        for scim_filter in ('badAttr eq "x"', "userName eq", 'userName xx "a"', "(((", 'a eq "'):
            response = scim.call("GET", endpoint, params={"filter": scim_filter})
            assert_scim_error(response, 400, "invalidFilter")


def test_patch_errors_carry_their_scim_type(scim: Scim) -> None:
    """noTarget, invalidPath, mutability and invalidValue, each where RFC 7644 puts it."""
    user = scim.user("patched@example.com")
    path = f"/Users/{user['id']}"
    for operation, scim_type in [
        ({"op": "remove"}, "noTarget"),
        ({"op": "replace", "path": 'emails[value sw "z"].type', "value": "x"}, "noTarget"),
        ({"op": "replace", "path": "name[[", "value": "x"}, "invalidPath"),
        ({"op": "replace", "path": "id", "value": "other"}, "mutability"),
        ({"op": "move", "path": "title", "value": "x"}, "invalidValue"),
        ({"op": "replace", "path": "active", "value": {"not": "a boolean"}}, "invalidValue"),
    ]:
        assert_scim_error(scim.call("PATCH", path, patch(operation)), 400, scim_type)


async def test_a_failing_patch_changes_nothing(scim: Scim, scim_db: Database) -> None:
    """PATCH is atomic: a valid operation before an invalid one is rolled back."""
    user = scim.user("atomic@example.com")
    before = await identity_row(scim_db, user["id"])

    response = scim.call(
        "PATCH",
        f"/Users/{user['id']}",
        patch(
            {"op": "add", "path": "title", "value": "Boss"},
            {"op": "replace", "path": "active", "value": {"not": "a boolean"}},
        ),
    )

    assert_scim_error(response, 400, "invalidValue")
    after = await identity_row(scim_db, user["id"])
    assert (after.version, after.resource) == (before.version, before.resource)
    assert "title" not in scim.ok("GET", f"/Users/{user['id']}")


def test_user_names_are_unique_whatever_their_case(scim: Scim) -> None:
    """`BJensen` then `bjensen`: 409 uniqueness, on create and on rename."""
    scim.user("BJensen@example.com")
    other = scim.user("other@example.com")

    assert_scim_error(
        scim.call("POST", "/Users", {"schemas": [USER_SCHEMA], "userName": "bjensen@EXAMPLE.com"}),
        409,
        "uniqueness",
    )
    rename = patch({"op": "replace", "path": "userName", "value": "BJENSEN@example.com"})
    assert_scim_error(scim.call("PATCH", f"/Users/{other['id']}", rename), 409, "uniqueness")
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops"}
    scim.ok("POST", "/Groups", group)
    assert_scim_error(
        scim.call("POST", "/Groups", {**group, "displayName": "OPS"}), 409, "uniqueness"
    )


def test_unknown_ids_methods_and_paths(scim: Scim) -> None:
    """Unknown resources 404, unsupported methods 405 with Allow, unsupported features 501."""
    assert_scim_error(scim.call("GET", f"/Users/{uuid.uuid4().hex}"), 404)
    rename = patch({"op": "replace", "path": "displayName", "value": "x"})
    assert_scim_error(scim.call("PATCH", f"/Groups/{uuid.uuid4().hex}", rename), 404)
    assert_scim_error(scim.call("DELETE", f"/Users/{uuid.uuid4().hex}"), 404)
    assert_scim_error(scim.call("GET", "/Printers"), 404)
    not_allowed = scim.call("DELETE", "/Users")
    assert_scim_error(not_allowed, 405)
    assert "GET" in not_allowed.headers["allow"]
    assert_scim_error(scim.call("GET", "/Users", params={"sortBy": "userName"}), 501)
    assert_scim_error(scim.call("POST", "/Bulk", {"Operations": []}), 501)


async def test_a_token_sees_only_its_own_integration(
    scim: Scim, scim_server: ScimServer, scim_db: Database
) -> None:
    """Another integration's token is 401 here; this one's ids are 404 there."""
    other = await new_integration(scim_server, scim_db, scim.client)
    theirs = other.user("theirs@example.com")
    ours = scim.user("ours@example.com")

    crossed = scim.client.get(
        f"{scim.url}/Users/{ours['id']}", headers={"Authorization": f"Bearer {other.token}"}
    )
    body = assert_scim_error(crossed, 401)
    assert crossed.headers["www-authenticate"].startswith("Bearer")
    assert ours["id"] not in crossed.text and scim.id not in body["detail"]
    assert_scim_error(scim.call("GET", f"/Users/{theirs['id']}"), 404)
    assert_scim_error(scim.call("DELETE", f"/Users/{theirs['id']}"), 404)
    assert (
        scim.ok("GET", "/Users", params={"filter": f'id eq "{theirs["id"]}"'})["totalResults"] == 0
    )
    assert other.ok("GET", f"/Users/{theirs['id']}")["userName"] == "theirs@example.com"


def test_every_answer_is_scim_json_even_off_the_routes(scim: Scim, scim_server: ScimServer) -> None:
    """Paths no route takes, OPTIONS, an unknown integration: SCIM errors throughout."""
    for method, url in [
        ("GET", f"{scim.url}/Users/a/b"),
        ("GET", f"{scim.url}/Users/%0A%00"),
        ("DELETE", f"{scim.url}/Users/%FF%FE"),
        ("OPTIONS", f"{scim.url}/Users"),
        ("GET", f"{scim_server.api}/scim/v2/{uuid.uuid4().hex}/Users"),
    ]:
        response = scim.client.request(
            method, url, headers={"Authorization": f"Bearer {scim.token}"}
        )
        assert response.status_code >= 400, (method, url)
        assert response.headers["content-type"].startswith(SCIM_JSON), (method, url)
        assert response.json()["schemas"] == [ERROR_SCHEMA]


async def test_unknown_attributes_are_kept_not_refused(scim: Scim, scim_db: Database) -> None:
    """An attribute no schema declares is accepted and kept, by POST and by PATCH."""
    user = scim.user("odd@example.com", costCenter="CC-1")
    assert user["costCenter"] == "CC-1"

    patched = scim.ok(
        "PATCH",
        f"/Users/{user['id']}",
        patch(
            {"op": "replace", "path": "costCenter", "value": "CC-2"},
            {"op": "add", "value": {"urn:example:custom:2.0:User:floor": "3"}},
        ),
    )

    assert patched["costCenter"] == "CC-2"
    assert patched["urn:example:custom:2.0:User"] == {"floor": "3"}
    assert "urn:example:custom:2.0:User" in patched["schemas"]
    stored = (await identity_row(scim_db, user["id"])).resource
    assert stored["costCenter"] == "CC-2" and stored["urn:example:custom:2.0:User"] == {
        "floor": "3"
    }
    removed = scim.ok(
        "PATCH",
        f"/Users/{user['id']}",
        patch({"op": "remove", "path": "urn:example:custom:2.0:User:floor"}),
    )
    assert "urn:example:custom:2.0:User" not in removed
    assert "urn:example:custom:2.0:User" not in removed["schemas"]
