"""A worker recycles its Chromium every two jobs under load without failing a single job."""

import asyncio
import re

from engine.storage.db import Database
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.test_okta_create import scim_post, wait_job
from tests.harness import Connected, Usher, start_process, stop_process

USERS = 12
WAIT_S = 120
"""The twelve jobs took 37 s on two cores already busy with other tests; this is the ceiling."""


async def test_recycling_the_browser_loses_no_job(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Two slots share a Chromium retired after every two contexts: twelve creates all
    succeed on their first attempt, one Acme account each, and the log shows the drain."""
    env = usher.worker_env(browser_jobs_before_restart="2", worker_max_jobs="2")
    log = usher.log_dir / "worker-recycling.log"
    with usher.own_worker_paused():
        worker = start_process("worker", env, log)
        try:
            emails = [f"rhea.recycle{n}@example.com" for n in range(USERS)]
            responses = await asyncio.gather(
                *(
                    scim_post(connected, okta_user(email, "Rhea", f"Recycle{n}"))
                    for n, email in enumerate(emails)
                )
            )
            assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
            jobs = await asyncio.gather(
                *(wait_job(usher_db, r.json()["id"], timeout_s=WAIT_S) for r in responses)
            )
            for job in jobs:
                assert (job.status, job.attempt) == (JobStatus.succeeded, 1), job.error
            for email in emails:
                assert len(acme.state.users_with_email(email)) == 1, email
        finally:
            stop_process(worker)

    text = log.read_text(errors="replace")
    retired = re.findall(r"chromium (\d+) retired: it served 2 jobs", text)
    closed = re.findall(r"chromium (\d+) closed: it served 2 jobs", text)
    assert len(retired) == USERS // 2 - 1, text
    assert sorted(closed) == sorted(retired), "every retired Chromium closed once drained"
    assert "TargetClosedError" not in text and "crashed or killed" not in text, text
