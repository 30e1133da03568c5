"""A group change reaches exactly the users who joined or left, through one group job."""

import asyncio
import time

import httpx
from sqlmodel import col, select

from engine.storage.db import Database
from engine.storage.models import Job, JobStatus
from fixtures.idp import okta_user
from tests.e2e.support import scim_post, wait_job
from tests.harness import Connected, Usher

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def jobs_of(db: Database, identity_id: str) -> list[Job]:
    """Return every job of an identity."""
    async with db.session() as session:
        return list((await session.exec(select(Job).where(Job.identity_id == identity_id))).all())


async def job_counts(
    db: Database, ids: list[str], wanted: list[int], timeout_s: float = 30
) -> list[int]:
    """Poll until the identities have at least the wanted numbers of jobs; return the counts."""
    deadline = time.monotonic() + timeout_s
    counts = [len(await jobs_of(db, i)) for i in ids]
    while any(c < w for c, w in zip(counts, wanted, strict=True)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        counts = [len(await jobs_of(db, i)) for i in ids]
    return counts


async def test_members_who_join_or_leave_are_reconciled(
    usher: Usher, usher_db: Database, connected: Connected
) -> None:
    """Push a group of two, then remove one: the group job carries just the changed ids."""
    ids = []
    for name in ("pat", "quinn", "rae"):
        response = await scim_post(connected, okta_user(f"{name}.group@example.com", name, "G"))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    for identity in ids:
        assert (await wait_job(usher_db, identity)).status == JobStatus.succeeded
    pat, quinn, rae = ids
    headers = {"Authorization": f"Bearer {connected.token}"}
    async with httpx.AsyncClient(headers=headers) as client:
        created = await client.post(
            f"{connected.scim_url}/Groups",
            json={"schemas": [GROUP], "displayName": "Editors", "members": [{"value": pat}]},
        )
        assert created.status_code == 201, created.text
        group_id = created.json()["id"]
        assert await job_counts(usher_db, [pat], [2]) == [2], "pat joined"
        patch = {
            "schemas": [PATCH],
            "Operations": [
                {"op": "remove", "path": f'members[value eq "{pat}"]'},
                {"op": "add", "path": "members", "value": [{"value": quinn}]},
            ],
        }
        changed = await client.patch(f"{connected.scim_url}/Groups/{group_id}", json=patch)
        assert changed.status_code in (200, 204), changed.text
    async with usher_db.session() as session:
        group_jobs = (await session.exec(select(Job).where(Job.group_id == group_id))).all()
    both = tuple(sorted((pat, quinn)))
    assert {tuple(j.members) for j in group_jobs} in ({(pat,), both}, {both})
    counts = await job_counts(usher_db, [pat, quinn, rae], [3, 2, 1])
    assert counts == [3, 2, 1], "pat joined then left, quinn joined, rae never was a member"
    for identity in ids:
        assert (await wait_job(usher_db, identity)).status == JobStatus.succeeded
    async with usher_db.session() as session:
        query = select(Job).where(col(Job.identity_id).in_(ids))
        assert {j.status for j in (await session.exec(query)).all()} == {JobStatus.succeeded}
