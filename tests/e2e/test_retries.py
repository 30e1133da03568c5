"""A transient failure (the app answers 500) is retried; the retry reconciles."""

import asyncio
import hashlib
import time

from sqlmodel import select

from engine.storage.db import Database
from engine.storage.models import Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import fetch, job_detail, scim_post, wait_job
from tests.harness import Connected, Usher


async def test_a_500_from_the_app_is_retried(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Every page fails on the first attempt; the second attempt creates the account."""
    acme.state.error_rate = 1.0
    response = await scim_post(connected, okta_user("max.retry@example.com", "Max", "Retry"))
    assert response.status_code == 201, response.text
    identity = response.json()["id"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        async with usher_db.session() as session:
            job = (await session.exec(select(Job).where(Job.identity_id == identity))).one()
        if job.attempt == 2:
            break
        await asyncio.sleep(0.1)
    assert job.attempt == 2 and job.status == JobStatus.retrying
    assert "the app answered 500" in (job.error or "")
    acme.state.error_rate = 0.0

    job = await wait_job(usher_db, identity)
    assert job.status == JobStatus.succeeded and job.attempt == 2
    detail = await job_detail(usher, connected, job.id)
    attempts = [(a["attempt"], a["name"], a["status"]) for a in detail["actions"]]
    assert attempts[0] == (1, "login", "failed")
    assert (2, "create_user", "succeeded") in attempts
    assert len(acme.state.users_with_email("max.retry@example.com")) == 1
    files = [e for a in detail["actions"] for st in a["steps"] for e in st["evidence"]]
    assert len({e["path"] for e in files}) == len(files), "each attempt keeps its own evidence"
    for item in files:
        data = await fetch(usher, connected, item["url"])
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
