"""Groups grant in Acme: a group named after a value, a mapped group, revoked only by the last.

Okta pushes the groups (its own payloads); the real worker drives Chromium through Acme.
"""

import asyncio
import time

import httpx
from sqlmodel import select

from engine.jobs import state
from engine.storage.db import Database
from engine.storage.models import Action, Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import filled, okta_user
from tests.e2e.support import roles, scim_post, wait_job
from tests.harness import Connected, Usher

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def jobs_of(db: Database, identity_id: str) -> list[Job]:
    """Return every job of an identity."""
    async with db.session() as session:
        return list((await session.exec(select(Job).where(Job.identity_id == identity_id))).all())


async def next_job(db: Database, identity_id: str, seen: int, timeout_s: float = 30) -> Job:
    """Wait for the identity's job after the `seen` it had, and for all of them to end."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = await jobs_of(db, identity_id)
        if len(jobs) > seen and all(j.status in state.FINAL for j in jobs):
            newest = max(jobs, key=lambda j: j.created_at)
            assert newest.status == JobStatus.succeeded, newest.error
            return newest
        await asyncio.sleep(0.1)
    raise AssertionError(f"no new final job for identity {identity_id} after {timeout_s}s")


async def actions_of(db: Database, job: Job) -> list[tuple[str, str | None]]:
    """Return the actions a job ran, but the sign-in."""
    async with db.session() as session:
        query = select(Action).where(Action.job_id == job.id, Action.name != "login")
        return [(a.name, a.target) for a in (await session.exec(query)).all()]


def remove(member: str) -> dict:
    """Return Okta's PATCH removing one member from a group."""
    path = f'members[value eq "{member}"]'
    return {"schemas": [PATCH], "Operations": [{"op": "remove", "path": path}]}


async def test_groups_grant_editor_until_the_last_one_is_left(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """editor by name, Acme Editors by mapping; leaving one keeps Editor, leaving both not."""
    ann_mail, bob_mail = "ann.groups@example.com", "bob.groups@example.com"
    ann = (await scim_post(connected, okta_user(ann_mail, "Ann", "Groups"))).json()["id"]
    bob = (await scim_post(connected, okta_user(bob_mail, "Bob", "Groups"))).json()["id"]
    for identity in (ann, bob):
        assert (await wait_job(usher_db, identity)).status == JobStatus.succeeded
    assert roles(acme, ann_mail) == roles(acme, bob_mail) == set()

    scim = {"Authorization": f"Bearer {connected.token}"}
    operator = {"Authorization": f"Bearer {connected.operator}"}
    async with httpx.AsyncClient(base_url=connected.scim_url, headers=scim) as idp:

        async def push(name: str) -> str:
            created = await idp.post("/Groups", json=filled("okta", "create_group", name=name))
            assert created.status_code == 201, created.text
            return created.json()["id"]

        async def patch(group: str, body: dict) -> None:
            changed = await idp.patch(f"/Groups/{group}", json=body)
            assert changed.status_code in (200, 204), changed.text

        editor = await push("editor")
        members = filled("okta", "group_replace_members", member=ann, member_name=ann_mail)
        await patch(editor, members)
        granted = await next_job(usher_db, ann, 1)
        assert await actions_of(usher_db, granted) == [("grant_entitlement", "editor")]
        assert roles(acme, ann_mail) == {"Editor"}

        acme_editors = await push("Acme Editors")
        async with httpx.AsyncClient(headers=operator) as api:
            mapped = await api.post(
                f"{usher.api}/api/integrations/{connected.id}/mappings",
                json={"group": "Acme Editors", "value": "editor"},
            )
        assert mapped.status_code == 201, mapped.text
        both = {"first": bob, "first_name": bob_mail, "second": ann, "second_name": ann_mail}
        await patch(acme_editors, filled("okta", "add_members", **both))
        granted = await next_job(usher_db, bob, 1)
        assert await actions_of(usher_db, granted) == [("grant_entitlement", "editor")]
        assert roles(acme, bob_mail) == {"Editor"}
        await next_job(usher_db, ann, 2)

        await patch(editor, remove(ann))
        kept = await next_job(usher_db, ann, 3)
        assert await actions_of(usher_db, kept) == [], "Acme Editors still grants editor"
        assert roles(acme, ann_mail) == {"Editor"}

        await patch(acme_editors, remove(ann))
        revoked = await next_job(usher_db, ann, 4)
        assert await actions_of(usher_db, revoked) == [("revoke_entitlement", "editor")]
        assert roles(acme, ann_mail) == set()
        assert roles(acme, bob_mail) == {"Editor"}

    async with httpx.AsyncClient(headers=operator) as api:
        plan = await api.get(f"{usher.api}/api/integrations/{connected.id}/plan")
    assert plan.status_code == 200, plan.text
    assert [i["actions"] for i in plan.json()["identities"]] == [[], []], "nothing left to do"
