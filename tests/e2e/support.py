"""What the end-to-end tests share: SCIM calls as an IdP makes them, waits that read the
database (the source of truth), the operator API's view of a job, and Acme's accounts."""

import asyncio
import time

import httpx
from sqlmodel import col, select

from engine.apps.integrations import create_integration
from engine.jobs import state
from engine.storage.db import Database
from engine.storage.models import Action, Job, JobStatus
from fixtures.acme.server import AcmeServer
from tests.harness import Connected, Usher


async def scim_post(connected: Connected, body: dict) -> httpx.Response:
    """POST a user as Okta does (with room for a loaded machine's slower answer)."""
    async with httpx.AsyncClient(timeout=30.0) as client:
        return await client.post(
            f"{connected.scim_url}/Users",
            json=body,
            headers={
                "Authorization": f"Bearer {connected.token}",
                "Content-Type": "application/json",
            },
        )


async def scim_patch(connected: Connected, user_id: str, *operations: dict) -> None:
    """PATCH a user with RFC 7644 operations."""
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.patch(
            f"{connected.scim_url}/Users/{user_id}",
            json=body,
            headers={"Authorization": f"Bearer {connected.token}"},
        )
    assert response.status_code in (200, 204), response.text


async def wait_job(db: Database, identity_id: str, timeout_s: float = 90) -> Job:
    """Wait until the identity's newest job is final."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with db.session() as session:
            query = select(Job).where(Job.identity_id == identity_id)
            jobs = (await session.exec(query)).all()
        if jobs and all(j.status in state.FINAL for j in jobs):
            return max(jobs, key=lambda j: j.created_at)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no final job for identity {identity_id} after {timeout_s}s")


async def job_detail(usher: Usher, connected: Connected, job_id: str) -> dict:
    """Read a job through the operator API."""
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{usher.api}/api/jobs/{job_id}",
            headers={"Authorization": f"Bearer {connected.operator}"},
        )
    assert response.status_code == 200, response.text
    return response.json()


async def fetch(usher: Usher, connected: Connected, url: str) -> bytes:
    """Download an evidence file with the operator token."""
    async with httpx.AsyncClient() as client:
        response = await client.get(url, headers={"Authorization": f"Bearer {connected.operator}"})
    assert response.status_code == 200, response.text
    return response.content


async def settle(db: Database, integration_id: str, identity_id: str, seen: int) -> list[Job]:
    """Wait until every job of the integration is final; return the identity's new jobs."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        async with db.session() as session:
            query = select(Job).where(Job.integration_id == integration_id)
            jobs = (await session.exec(query)).all()
        mine = sorted((j for j in jobs if j.identity_id == identity_id), key=lambda j: j.created_at)
        if len(mine) > seen and all(j.status in state.FINAL for j in jobs):
            for job in mine[seen:]:
                assert job.status in (JobStatus.succeeded, JobStatus.superseded), job.error
            return mine[seen:]
        await asyncio.sleep(0.2)
    raise AssertionError(f"jobs of {identity_id} did not settle")


async def ran(db: Database, jobs: list[Job]) -> list[tuple[str, str | None]]:
    """Return the actions that succeeded in these jobs, but the sign-in, in order."""
    async with db.session() as session:
        query = (
            select(Action)
            .where(
                col(Action.job_id).in_([j.id for j in jobs]),
                Action.name != "login",
                Action.status == "succeeded",
            )
            .order_by(col(Action.started_at))
        )
        return [(a.name, a.target) for a in (await session.exec(query)).all()]


def roles(acme: AcmeServer, email: str) -> set[str]:
    """Return the roles Acme's account of that email holds."""
    (user,) = acme.state.users_with_email(email)
    return set(user.roles)


async def connect_without_secrets(
    usher: Usher, db: Database, acme: AcmeServer, connected: Connected
) -> Connected:
    """Create a second Acme integration whose service account was never set: its jobs block.

    It skips the onboarding import: without secrets none could run, and its jobs would wait
    for it instead of blocking, which is what these tests prove.
    """
    async with db.session() as session:
        bare, token = await create_integration(
            session, usher.settings, app="acme", base_url=acme.url, import_accounts=False
        )
    return Connected(bare.id, token, connected.operator, f"{usher.api}/scim/v2/{bare.id}")
