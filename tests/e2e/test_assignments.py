"""A direct assignment reaches Acme and leaves it when it expires: the real worker grants the
value, its maintenance timer ends the assignment, and the next job revokes the value."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import col, select

from engine.storage.db import Database
from engine.storage.models import Action, Assignment, AuditEvent, Job
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import roles, scim_post, wait_job
from tests.harness import Connected, Usher
from tests.operators import usher_cli

TTL_S = 3600
"""The ticket's time to live; the test then moves the expiry to now, once Acme shows the grant,
so that a slow grant on a loaded machine never races the timer."""
DEADLINE_S = 90


async def until(check: object, what: str) -> None:
    """Poll a check of what the user sees until it holds, or fail naming what never happened."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {DEADLINE_S}s")


async def actions_of(db: Database, identity_id: str) -> list[tuple[str, str | None, str]]:
    """Return the actions the identity's jobs ran, but the sign-in, oldest first."""
    async with db.session() as session:
        query = (
            select(Action)
            .join(Job, col(Job.id) == col(Action.job_id))
            .where(Job.identity_id == identity_id, Action.name != "login")
            .order_by(col(Action.started_at))
        )
        return [(a.name, a.target, a.status) for a in (await session.exec(query)).all()]


async def expire_now(db: Database, assignment_id: str) -> None:
    """Move an assignment's expiry to now, as if its time to live had run out."""
    async with db.session() as session:
        stored = await session.get(Assignment, assignment_id)
        assert stored is not None and stored.expires_at is not None
        stored.expires_at = datetime.now(UTC)
        session.add(stored)
        await session.commit()


async def test_an_assignment_with_a_time_to_live_is_granted_then_revoked_when_it_expires(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """A ticket grants Billing to a user Okta pushed; Acme shows it, then, expired, no more."""
    email = "ann.ticket@example.com"
    pushed = await scim_post(connected, okta_user(email, "Ann", "Ticket"))
    assert pushed.status_code == 201, pushed.text
    identity_id = pushed.json()["id"]
    assert (await wait_job(usher_db, identity_id)).status == "succeeded"
    assert roles(acme, email) == set()

    created_key = usher_cli(usher, "integrations", "create-key", connected.id, "--name", "desk")
    assert created_key.exit_code == 0, created_key.output
    key = created_key.output.split("API key")[1].split()[0]
    body = {
        "integration_id": connected.id,
        "user_name": email,
        "value": "billing",
        "reason": "TICKET-9: one-off export",
        "ttl_seconds": TTL_S,
    }
    async with httpx.AsyncClient(
        base_url=usher.api, headers={"Authorization": f"Bearer {key}"}, timeout=30.0
    ) as api:
        created = await api.post("/api/assignments", json=body)
        assert created.status_code == 201, created.text
        assignment = created.json()["id"]

        await until(lambda: "Billing" in roles(acme, email), "Billing granted in Acme")
        answer = created.json()
        ttl = datetime.fromisoformat(answer["expires_at"]) - datetime.fromisoformat(
            answer["created_at"]
        )
        assert abs(ttl - timedelta(seconds=TTL_S)) < timedelta(seconds=1)
        await expire_now(usher_db, assignment)
        await until(lambda: "Billing" not in roles(acme, email), "Billing revoked in Acme")

        listed = await api.get("/api/assignments", params={"include_ended": "true"})
    assert [(a["id"], a["state"]) for a in listed.json()] == [(assignment, "expired")]
    assert (await wait_job(usher_db, identity_id)).status == "succeeded"
    ran = await actions_of(usher_db, identity_id)
    assert ("grant_entitlement", "billing", "succeeded") in ran
    assert ran[-1] == ("revoke_entitlement", "billing", "succeeded")
    async with usher_db.session() as session:
        query = select(AuditEvent.event, AuditEvent.actor).where(AuditEvent.target == assignment)
        events = sorted((await session.exec(query)).all())
    assert events == [("assignment.created", "key:desk"), ("assignment.expired", "usher")]
