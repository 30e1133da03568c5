"""The assignments API over HTTP, as a ticketing system calls it, on SQLite and PostgreSQL.

The integrations here have no service account: their jobs block at once without a browser,
so these tests read answers, rows and plans, not Acme (tests/e2e/test_assignments.py does).
"""

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from engine.constants import IDEMPOTENT_REPLAY_HEADER, JOB_ID_HEADER
from engine.storage.db import Database
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import connect_without_secrets, scim_post
from tests.harness import Connected, Usher
from tests.operators import usher_cli

VALID = "viewer, editor, admin, billing, plan-free, plan-pro, plan-enterprise"
"""Acme's catalogue, as a refusal names it."""


def create_key(usher: Usher, integration_id: str, name: str = "servicedesk") -> str:
    """Create an integration API key with the real CLI; return the key it prints once."""
    result = usher_cli(usher, "integrations", "create-key", integration_id, "--name", name)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("API key")]
    return line.split()[-1]


def operator_token(usher: Usher, role: str) -> str:
    """Create an operator API token of a role with the real CLI."""
    result = usher_cli(usher, "tokens", "create", "--name", f"assign-{role}", "--role", role)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def bare(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> Connected:
    """Return an Acme integration without a service account: its jobs block, no browser runs."""
    return await connect_without_secrets(usher, usher_db, acme, connected)


@pytest.fixture
async def api(usher: Usher) -> AsyncIterator[httpx.AsyncClient]:
    """Return an HTTP client of the running Usher."""
    async with httpx.AsyncClient(base_url=usher.api, timeout=30.0) as client:
        yield client


async def pushed_user(integration: Connected, name: str) -> tuple[str, str]:
    """Push a user through SCIM as Okta does; return its userName and id."""
    user_name = f"{name}.{secrets.token_hex(3)}@example.com"
    created = await scim_post(integration, okta_user(user_name, name.title(), "Ticket"))
    assert created.status_code == 201, created.text
    return user_name, created.json()["id"]


def billing(integration: Connected, user_name: str, **extra: object) -> dict:
    """Return a request body granting Billing to a user by userName."""
    body = {"integration_id": integration.id, "user_name": user_name, "value": "billing"}
    return body | {"reason": "TICKET-7: quarter-end close"} | extra


async def test_an_unknown_value_is_a_422_naming_the_valid_ones(
    usher: Usher, bare: Connected, api: httpx.AsyncClient
) -> None:
    """The message names the value refused and every value the app offers."""
    key = create_key(usher, bare.id)
    user_name, _ = await pushed_user(bare, "val")
    refused = await api.post(
        "/api/assignments", json=billing(bare, user_name, value="superuser"), headers=bearer(key)
    )
    assert refused.status_code == 422
    assert (
        refused.json()["detail"]
        == f"app acme has no entitlement 'superuser'; valid values: {VALID}"
    )


async def test_an_unknown_or_deleted_user_is_a_422_that_says_so(
    usher: Usher, bare: Connected, api: httpx.AsyncClient
) -> None:
    """A user the IdP never pushed, by userName or by id, is named in the refusal."""
    key = create_key(usher, bare.id)
    by_name = await api.post(
        "/api/assignments", json=billing(bare, "nobody@example.com"), headers=bearer(key)
    )
    assert by_name.status_code == 422
    assert "no user 'nobody@example.com'" in by_name.json()["detail"]
    body = billing(bare, "x") | {"identity_id": "f" * 32}
    del body["user_name"]
    by_id = await api.post("/api/assignments", json=body, headers=bearer(key))
    assert by_id.status_code == 422 and f"no user '{'f' * 32}'" in by_id.json()["detail"]


async def test_a_retried_post_returns_the_first_answer_and_makes_no_second_row(
    usher: Usher, bare: Connected, api: httpx.AsyncClient
) -> None:
    """Same Idempotency-Key and body: same id and status; another body under it: 422."""
    key = create_key(usher, bare.id)
    user_name, _ = await pushed_user(bare, "retry")
    headers = bearer(key) | {"Idempotency-Key": "TICKET-7-billing"}
    body = billing(bare, user_name, ttl_seconds=3600)
    first = await api.post("/api/assignments", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert IDEMPOTENT_REPLAY_HEADER not in first.headers
    again = await api.post("/api/assignments", json=body, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers[IDEMPOTENT_REPLAY_HEADER] == "true"
    assert again.headers[JOB_ID_HEADER] == first.headers[JOB_ID_HEADER]
    listed = await api.get("/api/assignments", params={"user": user_name}, headers=bearer(key))
    assert [a["id"] for a in listed.json()] == [first.json()["id"]]

    other = await api.post(
        "/api/assignments", json=billing(bare, user_name, value="editor"), headers=headers
    )
    assert other.status_code == 422
    assert "was used before with another request body" in other.json()["detail"]
    fresh = await api.post(
        "/api/assignments",
        json=billing(bare, user_name, value="editor"),
        headers=bearer(key) | {"Idempotency-Key": "TICKET-8-editor"},
    )
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]


async def test_a_key_opens_only_its_own_integrations_assignments(
    usher: Usher, usher_db: Database, acme: AcmeServer, bare: Connected, api: httpx.AsyncClient
) -> None:
    """A's key: 403 posting for B, 404 deleting B's, 403 listing B's, 401 on any other API."""
    other = await connect_without_secrets(usher, usher_db, acme, bare)
    mine, theirs = create_key(usher, bare.id), create_key(usher, other.id)
    user_name, _ = await pushed_user(other, "scope")
    into_other = await api.post(
        "/api/assignments", json=billing(other, user_name), headers=bearer(mine)
    )
    assert into_other.status_code == 403
    assert "another integration" in into_other.json()["detail"]
    created = await api.post(
        "/api/assignments", json=billing(other, user_name), headers=bearer(theirs)
    )
    assert created.status_code == 201, created.text
    assignment = created.json()["id"]
    deleted = await api.delete(f"/api/assignments/{assignment}", headers=bearer(mine))
    assert deleted.status_code == 404
    listed = await api.get(
        "/api/assignments", params={"integration_id": other.id}, headers=bearer(mine)
    )
    assert listed.status_code == 403
    assert (await api.get("/api/assignments", headers=bearer(mine))).json() == []
    for path in (f"/api/integrations/{bare.id}", f"/api/jobs/{created.headers[JOB_ID_HEADER]}"):
        assert (await api.get(path, headers=bearer(mine))).status_code == 401
    still = await api.get("/api/assignments", headers=bearer(theirs))
    assert [(a["id"], a["state"]) for a in still.json()] == [(assignment, "active")]


async def test_a_revoked_key_is_refused_and_listed_as_revoked(
    usher: Usher, bare: Connected, api: httpx.AsyncClient
) -> None:
    """`usher integrations keys` shows its use and revocation, never the key; then 401."""
    key = create_key(usher, bare.id, name="helpdesk")
    assert (await api.get("/api/assignments", headers=bearer(key))).status_code == 200
    listed = usher_cli(usher, "integrations", "keys", bare.id)
    assert listed.exit_code == 0 and key not in listed.output
    (row,) = [line for line in listed.output.splitlines() if " helpdesk " in line]
    key_id = row.split()[0]
    assert "never" not in row and row.split()[-1] == "no"
    revoked = usher_cli(usher, "integrations", "revoke-key", key_id)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    refused = await api.get("/api/assignments", headers=bearer(key))
    assert refused.status_code == 401
    assert refused.json()["detail"].startswith("this API key is unknown or revoked")
    user_name, _ = await pushed_user(bare, "revoked")
    posted = await api.post("/api/assignments", json=billing(bare, user_name), headers=bearer(key))
    assert posted.status_code == 401
    (row,) = [
        line
        for line in usher_cli(usher, "integrations", "keys", bare.id).output.splitlines()
        if " helpdesk " in line
    ]
    assert row.split()[-1] != "no"
    unknown = usher_cli(usher, "integrations", "revoke-key", "no-such-key")
    assert unknown.exit_code == 2 and "no API key 'no-such-key'" in unknown.output


async def test_an_admin_token_assigns_a_viewer_only_reads(
    usher: Usher, bare: Connected, api: httpx.AsyncClient
) -> None:
    """Operators may use the API too: an admin changes, a viewer lists and is refused changes."""
    admin, viewer = operator_token(usher, "admin"), operator_token(usher, "viewer")
    user_name, _ = await pushed_user(bare, "operator")
    refused = await api.post(
        "/api/assignments", json=billing(bare, user_name), headers=bearer(viewer)
    )
    assert refused.status_code == 403
    created = await api.post(
        "/api/assignments", json=billing(bare, user_name), headers=bearer(admin)
    )
    assert created.status_code == 201 and created.json()["created_by"] == "token:assign-admin"
    listed = await api.get(
        "/api/assignments", params={"integration_id": bare.id}, headers=bearer(viewer)
    )
    assert [a["id"] for a in listed.json()] == [created.json()["id"]]
    gone = await api.delete(f"/api/assignments/{created.json()['id']}", headers=bearer(viewer))
    assert gone.status_code == 403
    assert (await api.get("/api/assignments")).status_code == 401


async def test_the_plan_shows_the_assignment_until_it_is_deleted(
    usher: Usher, bare: Connected, api: httpx.AsyncClient
) -> None:
    """`usher plan` names "assignment: <reason>" as Billing's source; DELETE takes it away."""
    key = create_key(usher, bare.id)
    user_name, identity_id = await pushed_user(bare, "plan")
    body = {"integration_id": bare.id, "identity_id": identity_id, "value": "billing"}
    body["reason"] = "TICKET-7: quarter-end close"
    created = await api.post("/api/assignments", json=body, headers=bearer(key))
    assert created.status_code == 201, created.text
    assert created.json()["user_name"] == user_name and created.json()["state"] == "active"
    shown = usher_cli(usher, "plan", "--integration", bare.id, "--user", user_name)
    assert "grant_entitlement billing  <- assignment: TICKET-7: quarter-end close" in shown.output

    deleted = await api.delete(f"/api/assignments/{created.json()['id']}", headers=bearer(key))
    assert deleted.status_code == 200, deleted.text
    assert (
        deleted.json()["state"] == "revoked" and deleted.json()["revoked_by"] == "key:servicedesk"
    )
    assert deleted.headers[JOB_ID_HEADER]
    again = await api.delete(f"/api/assignments/{created.json()['id']}", headers=bearer(key))
    assert again.status_code == 200 and again.json()["revoked_at"] == deleted.json()["revoked_at"]
    assert JOB_ID_HEADER not in again.headers
    shown = usher_cli(usher, "plan", "--integration", bare.id, "--user", user_name)
    assert "billing" not in shown.output
    ended = await api.get(
        "/api/assignments",
        params={"user": identity_id, "include_ended": "true"},
        headers=bearer(key),
    )
    assert [a["state"] for a in ended.json()] == ["revoked"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"user_name": "a@example.com", "value": "billing"}, "Field required"),
        (
            {"user_name": "a@example.com", "identity_id": "x", "value": "b", "reason": "r"},
            "exactly one",
        ),
        ({"user_name": "a", "value": "b", "reason": "r", "ttl_seconds": 10**12}, "less than"),
        (
            {"user_name": "a", "value": "b", "reason": "r", "expires_at": "2030-01-01T00:00:00"},
            "timezone",
        ),
        (
            {
                "user_name": "a",
                "value": "b",
                "reason": "r",
                "ttl_seconds": 5,
                "expires_at": "2030-01-01T00:00:00Z",
            },
            "not both",
        ),
        (
            {"user_name": "a", "value": "b", "reason": "r", "expires_at": "2001-01-01T00:00:00Z"},
            "in the past",
        ),
        ({"user_name": "a", "value": "b", "reason": "   "}, "at least 1 character"),
        ({"user_name": "a", "value": "b", "reason": "r", "role": "admin"}, "Extra inputs"),
    ],
)
async def test_bad_input_is_a_clear_422_never_a_stack_trace(
    usher: Usher, bare: Connected, api: httpx.AsyncClient, body: dict, words: str
) -> None:
    """Each refusal says what is wrong; nothing of Python's internals reaches the client."""
    key = create_key(usher, bare.id)
    answer = await api.post(
        "/api/assignments", json={"integration_id": bare.id} | body, headers=bearer(key)
    )
    assert answer.status_code == 422
    assert words in answer.text and "Traceback" not in answer.text


async def test_malformed_requests_are_refused_plainly(
    usher: Usher, bare: Connected, api: httpx.AsyncClient
) -> None:
    """Not JSON, a bad Idempotency-Key, an unknown integration: 4xx with a plain message."""
    key, admin = create_key(usher, bare.id), operator_token(usher, "admin")
    not_json = await api.post(
        "/api/assignments",
        content=b"{not json",
        headers=bearer(key) | {"Content-Type": "application/json"},
    )
    assert not_json.status_code == 422 and "Traceback" not in not_json.text
    user_name, _ = await pushed_user(bare, "header")
    too_long = await api.post(
        "/api/assignments",
        json=billing(bare, user_name),
        headers=bearer(key) | {"Idempotency-Key": "k" * 300},
    )
    assert too_long.status_code == 422
    nowhere = await api.post(
        "/api/assignments",
        json=billing(bare, user_name) | {"integration_id": "nope"},
        headers=bearer(admin),
    )
    assert nowhere.status_code == 404 and nowhere.json()["detail"] == "no integration 'nope'"
    missing = await api.delete("/api/assignments/nope", headers=bearer(key))
    assert missing.status_code == 404 and missing.json()["detail"] == "no assignment 'nope'"


async def test_the_openapi_page_documents_both_routes_with_examples(
    api: httpx.AsyncClient,
) -> None:
    """POST and DELETE /api/assignments carry request and answer examples."""
    spec = (await api.get("/openapi.json")).json()
    post = spec["paths"]["/api/assignments"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert examples["by_user_name_for_a_week"]["value"]["ttl_seconds"] == 604800
    assert "valid values" in str(post["responses"]["422"])
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    delete = spec["paths"]["/api/assignments/{assignment_id}"]["delete"]
    assert (
        delete["responses"]["200"]["content"]["application/json"]["example"]["state"] == "revoked"
    )
    assert (await api.get("/docs")).status_code == 200
