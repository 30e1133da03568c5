"""The guard's API: a viewer reads what is held and is refused approval; an admin approves.

Two jobs' removals are held in the served database (tests/jobs/support.py) while the
session's worker is paused, so that only the guard decides what becomes of them.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import CSRF_HEADER
from engine.jobs import guard
from engine.storage.db import Database
from engine.storage.models import AuditEvent, Job, JobStatus
from tests.databases import run_apart
from tests.harness import Usher
from tests.jobs.support import hold_removals
from tests.operators import Account, usher_cli

T = TypeVar("T")


def read(usher: Usher, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run a read over the served database and return what it found."""

    async def opened() -> T:
        """Open the served database for one look."""
        database = Database(usher.database_url)
        try:
            async with database.reader() as session:
                return await work(session)
        finally:
            await database.dispose()

    return run_apart(opened)


def test_a_viewer_reads_the_held_removals_and_cannot_approve_them(
    usher: Usher, viewer: Account, admin: Account, signed_in_client
) -> None:
    """The viewer gets the held list and 403 on approve and on the limit, token or session;
    the admin's session needs its CSRF header, then approves: both jobs are queued."""
    with usher.own_worker_paused():
        integration_id, jobs = hold_removals(usher.database_url, 2)
        as_viewer, viewer_csrf = signed_in_client(viewer)
        held = as_viewer.get(f"/api/integrations/{integration_id}/held")
        assert held.status_code == 200, held.text
        assert sorted(h["job_id"] for h in held.json()["held"]) == sorted(jobs)
        assert held.json()["max_removals_per_hour"] == 0
        approve = f"/api/integrations/{integration_id}/approve"
        assert as_viewer.post(approve, headers={CSRF_HEADER: viewer_csrf}).status_code == 403
        limit = {"max_removals_per_hour": 9}
        put = as_viewer.put(
            f"/api/integrations/{integration_id}/guard",
            json=limit,
            headers={CSRF_HEADER: viewer_csrf},
        )
        assert put.status_code == 403
        token = usher_cli(usher, "tokens", "create", "--name", "guard", "--role", "viewer")
        bearer = {"Authorization": f"Bearer {token.output.strip()}"}
        with httpx.Client(base_url=usher.api, headers=bearer) as client:
            assert client.post(approve).status_code == 403

        as_admin, admin_csrf = signed_in_client(admin)
        assert as_admin.post(approve).status_code == 403
        approved = as_admin.post(approve, headers={CSRF_HEADER: admin_csrf})
        assert approved.status_code == 200, approved.text
        assert approved.json() == {"id": integration_id, "released_jobs": 2}

        async def states(session: AsyncSession) -> list[str]:
            """Read the two jobs' states."""
            found = await session.exec(select(Job.status).where(col(Job.id).in_(jobs)))
            return list(found.all())

        assert read(usher, states) == [JobStatus.queued, JobStatus.queued]
        after = as_admin.get(f"/api/integrations/{integration_id}/held").json()
        assert after["held"] == []

        async def approvals(session: AsyncSession) -> list[str]:
            """Read who approved the integration's held removals."""
            query = select(AuditEvent.actor).where(
                AuditEvent.integration_id == integration_id, AuditEvent.event == guard.APPROVED
            )
            return list((await session.exec(query)).all())

        assert read(usher, approvals) == [admin.username]
        changed = as_admin.put(
            f"/api/integrations/{integration_id}/guard",
            json=limit,
            headers={CSRF_HEADER: admin_csrf},
        )
        assert changed.status_code == 200 and changed.json()["max_removals_per_hour"] == 9
        shown = as_admin.get(f"/api/integrations/{integration_id}")
        assert shown.json()["max_removals_per_hour"] == 9
        refused = as_admin.put(
            f"/api/integrations/{integration_id}/guard",
            json={"max_removals_per_hour": -1},
            headers={CSRF_HEADER: admin_csrf},
        )
        assert refused.status_code == 422
        missing = as_admin.post(
            "/api/integrations/no-such-integration/approve", headers={CSRF_HEADER: admin_csrf}
        )
        assert missing.status_code == 404
