"""Globex end to end, on SQLite and PostgreSQL: every action of the single-page app through
the real worker, asserting Globex's own state; its session kept in sessionStorage across
jobs (encrypted at rest) and re-established once when it ends mid-job; a background fetch
that fails is retried; its next release passes through the fallbacks, reported degraded."""

import asyncio
import time

import httpx

from engine.automation.sessions import SESSION_STORAGE, load_session
from engine.jobs import state as job_states
from engine.storage.db import Database
from engine.storage.models import IntegrationSession, Job, JobStatus
from engine.storage.vault import Vault
from fixtures.globex.server import GlobexServer
from fixtures.globex.state import GlobexState, Member
from fixtures.idp import okta_user
from tests.e2e.support import job_detail, scim_patch, scim_post, wait_job
from tests.harness import Connected, Usher, wait_for

CROWD = 25
"""Members listed before the new one (by last name), so finding it means scrolling."""
TOKEN_KEY = "globex.session"


def crowd(state: GlobexState) -> None:
    """Fill the member list so that one fetch does not show it all."""
    for n in range(CROWD):
        state.add_member(f"crowd{n:02d}@globex.test", "Casey", f"Crowd{n:02d}")


async def actions_of(
    usher: Usher, db: Database, connected: Connected, user_id: str
) -> list[tuple[str, str]]:
    """Wait for the identity's job, check it succeeded, return its actions and outcomes."""
    job = await wait_job(db, user_id)
    assert job.status == JobStatus.succeeded, job.error
    detail = await job_detail(usher, connected, job.id)
    return [(a["name"], a["status"]) for a in detail["actions"]]


async def kept_state(usher: Usher, db: Database, connected: Connected) -> tuple[bytes, dict]:
    """Return the integration's kept session as stored, and decrypted."""
    vault = Vault.from_path(usher.settings.vault_key_path)
    async with db.session() as session:
        row = await session.get(IntegrationSession, connected.id)
        kept = await load_session(session, vault, connected.id)
    assert row is not None and kept is not None
    return row.ciphertext, kept.state


async def inventory(usher: Usher, db: Database, connected: Connected) -> dict:
    """Read Globex's members with list_users now, as an operator asks; return the report."""
    headers = {"Authorization": f"Bearer {connected.operator}"}
    base = f"{usher.api}/api/integrations/{connected.id}"
    async with httpx.AsyncClient(timeout=30.0, headers=headers) as client:
        queued = await client.post(f"{base}/reconcile")
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["job_id"]
        deadline = time.monotonic() + 90
        while True:
            async with db.session() as session:
                job = await session.get(Job, job_id)
            assert job is not None
            if job.status in job_states.FINAL:
                break
            assert time.monotonic() < deadline, f"inventory job {job_id} is still {job.status}"
            await asyncio.sleep(0.2)
        assert job.status == JobStatus.succeeded, job.error
        drift = await client.get(f"{base}/drift")
    assert drift.status_code == 200, drift.text
    return drift.json()["report"]


def only(state: GlobexState, email: str) -> Member:
    """Return the one member with this email."""
    (member,) = state.by_email(email)
    return member


async def test_every_globex_action_with_its_kept_session(
    usher: Usher, usher_db: Database, globex: GlobexServer, globex_connected: Connected
) -> None:
    """create -> grant -> set_role -> update -> revoke -> deactivate -> reactivate, each
    asserted in Globex; one sign-in for all of it (the token restored into sessionStorage);
    a failed fetch retried; a session ended mid-job renewed once; list_users reads all."""
    state, connected = globex.state, globex_connected
    crowd(state)
    body = okta_user("Yara.Young@Example.com", "Yara", "Young")
    body["title"] = "Analyst"
    body["entitlements"] = [{"value": "billing"}, {"value": "manager"}]
    response = await scim_post(connected, body)
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    done = await actions_of(usher, usher_db, connected, user_id)
    assert sorted(done) == sorted(
        [
            ("login", "succeeded"),
            ("create_user", "succeeded"),
            ("update_user", "succeeded"),
            ("grant_entitlement", "succeeded"),
            ("set_role", "succeeded"),
        ]
    )
    yara = only(state, "yara.young@example.com")
    assert (yara.title, yara.role, yara.addons) == ("Analyst", "Manager", {"Billing"})
    assert state.consents == 1, "the cookie wall was met and answered"

    ciphertext, kept = await kept_state(usher, usher_db, connected)
    [tab] = kept[SESSION_STORAGE]
    token = tab["items"][TOKEN_KEY]
    assert tab["origin"] == globex.url and token in state.sessions
    assert token.encode() not in ciphertext, "the kept token is encrypted at rest"
    assert [c["name"] for c in kept["cookies"]] == [], "Globex keeps no cookie to restore"

    state.fail_next[f"/api/members/{yara.id}"] = 1
    await scim_patch(connected, user_id, {"op": "replace", "path": "title", "value": "Lead"})
    assert await actions_of(usher, usher_db, connected, user_id) == [
        ("login", "succeeded"),
        ("update_user", "failed"),
        ("update_user", "succeeded"),
    ], "the member's fetch answered 503 once: the update was tried again from its check"
    assert yara.title == "Lead" and state.errors_injected == 1

    no_billing = {"op": "remove", "path": 'entitlements[value eq "billing"]'}
    owner = {"op": "add", "path": "entitlements", "value": [{"value": "owner"}]}
    await scim_patch(connected, user_id, no_billing, owner)
    done = await actions_of(usher, usher_db, connected, user_id)
    assert sorted(done) == [
        ("login", "succeeded"),
        ("revoke_entitlement", "succeeded"),
        ("set_role", "succeeded"),
    ]
    assert (yara.role, yara.addons) == ("Owner", set())

    yara.addons.add("Audit")
    audit = {"op": "add", "path": "entitlements", "value": [{"value": "audit"}]}
    await scim_patch(connected, user_id, audit)
    job = await wait_job(usher_db, user_id)
    granted = (await job_detail(usher, connected, job.id))["actions"][-1]
    assert granted["name"] == "grant_entitlement"
    assert [s["name"] for s in granted["steps"] if s["status"] == "already"] == [
        "Add-on already held"
    ]

    await scim_patch(connected, user_id, {"op": "replace", "path": "active", "value": False})
    assert (await actions_of(usher, usher_db, connected, user_id))[-1] == (
        "deactivate_user",
        "succeeded",
    )
    assert yara.active is False
    await scim_patch(connected, user_id, {"op": "replace", "path": "active", "value": True})
    assert (await actions_of(usher, usher_db, connected, user_id))[-1] == (
        "reactivate_user",
        "succeeded",
    )
    assert yara.active is True
    assert state.logins == 1, "every job after the first reused the kept session"

    report = await inventory(usher, usher_db, connected)
    assert report["accounts"] == len(state.members) == CROWD + 4, "every batch was scrolled in"
    findings = report["findings"]
    assert (findings["matched"], findings["missing"], findings["differing"]) == (1, [], [])
    assert len(findings["orphans"]) == CROWD + 3, "the members Usher did not make"
    assert state.logins == 1

    state.expire_sessions_at = f"/api/members/{yara.id}"
    await scim_patch(
        connected, user_id, {"op": "replace", "path": "name.givenName", "value": "Yana"}
    )
    assert await actions_of(usher, usher_db, connected, user_id) == [
        ("login", "succeeded"),
        ("update_user", "failed"),
        ("login", "succeeded"),
        ("update_user", "succeeded"),
    ], "the session ended mid-job: signed in again once, then the update went through"
    assert yara.first_name == "Yana" and state.logins == 2
    assert len(state.by_email("yara.young@example.com")) == 1


async def test_globex_v2_passes_through_the_fallbacks_and_is_reported_degraded(
    usher: Usher, usher_db: Database, globex: GlobexServer, globex_connected: Connected
) -> None:
    """The next release renames "Add member" and moves the email field, unlabelled: the
    member is made all the same, and the run says which locators found nothing."""
    state, connected = globex.state, globex_connected
    state.v2 = True
    response = await scim_post(connected, okta_user("vic.vance@example.com", "Vic", "Vance"))
    assert response.status_code == 201, response.text
    job = await wait_job(usher_db, response.json()["id"])
    assert job.status == JobStatus.succeeded, job.error
    assert only(state, "vic.vance@example.com").full_name == "Vic Vance"

    detail = await job_detail(usher, connected, job.id)
    assert detail["degraded"] is True
    made = next(a for a in detail["actions"] if a["name"] == "create_user")
    assert (made["status"], made["degraded"]) == ("succeeded", True)
    drifted = {s["name"]: (s["failed_locator"], s["locator"]) for s in made["steps"]}
    assert drifted["Open the Add member form"] == (
        "role='button', name='Add member'",
        "role='button', name='Invite member'",
    )
    assert drifted["Type the email"] == ("label='Email'", "placeholder='Work email'")
    assert [name for name, (failed, _) in drifted.items() if failed] == [
        "Open the Add member form",
        "Type the email",
    ]
    shown: dict = {}

    def health_names_the_job() -> bool:
        nonlocal shown
        answer = httpx.get(
            f"{usher.api}/api/integrations/{connected.id}",
            headers={"Authorization": f"Bearer {connected.operator}"},
            timeout=30,
        )
        shown = answer.json()
        return job.id in (shown.get("health_detail") or "")

    wait_for(health_names_the_job, 30, "the integration's health to name the degraded job")
    assert shown["health"] == "degraded"
