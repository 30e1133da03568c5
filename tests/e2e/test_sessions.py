"""The kept sign-in: shared by workers, renewed once when Acme ends it."""

import asyncio

from engine.storage.db import Database
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import job_detail, scim_post, wait_job
from tests.harness import (
    Connected,
    Usher,
    start_process,
    stop_process,
)


def signed_in_fresh(detail: dict) -> bool:
    """Tell whether a job typed credentials rather than reusing the kept session."""
    login = next(a for a in detail["actions"] if a["name"] == "login")
    return any(s["name"] == "Type the password" for s in login["steps"])


async def test_an_expired_session_is_renewed_once_while_another_worker_waits(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Two workers meet an expired session: one signs in, the other reuses its session."""
    state = acme.state
    env = usher.worker_env()
    second = start_process("worker", env, usher.log_dir / "worker-2.log")
    try:
        first = await scim_post(connected, okta_user("jo.first@example.com", "Jo", "First"))
        assert first.status_code == 201, first.text
        assert (await wait_job(usher_db, first.json()["id"])).status == JobStatus.succeeded
        assert state.logins == 1

        state.expire_sessions()
        bodies = [okta_user(f"{n}.pair@example.com", n.title(), "Pair") for n in ("kim", "lee")]
        responses = await asyncio.gather(*(scim_post(connected, body) for body in bodies))
        assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
        ids = [r.json()["id"] for r in responses]
        jobs = await asyncio.gather(*(wait_job(usher_db, identity) for identity in ids))
        assert [j.status for j in jobs] == [JobStatus.succeeded] * 2, [j.error for j in jobs]
        assert state.logins == 2, "the expired session was renewed exactly once"
        details = [await job_detail(usher, connected, j.id) for j in jobs]
        assert sorted(signed_in_fresh(d) for d in details) == [False, True]
        for body in bodies:
            assert len(state.users_with_email(body["userName"])) == 1
    finally:
        stop_process(second)
