"""A transient fault is retried where it happened: the action, not the whole job."""

import hashlib

from engine.storage.db import Database
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import job_detail, scim_post, wait_job
from tests.harness import ROOT, Connected, Usher

PEOPLE = [f"flaky{n}@example.com" for n in range(2)]
ERROR_RATE = 0.1
"""A tenth of the pages fail at random; the fault suite's scenario 4 drives a fifth of them
failing at a larger scale."""


async def test_an_app_failing_some_of_its_pages_still_gets_every_account_once(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """With a tenth of Acme's answers 500, every job succeeds and no account is doubled."""
    acme.state.error_rate = ERROR_RATE
    acme.state.fail_next["/users/new"] = len(PEOPLE)
    try:
        identities = []
        for email in PEOPLE:
            response = await scim_post(connected, okta_user(email, "Flaky", "Page"))
            assert response.status_code == 201, response.text
            identities.append(response.json()["id"])
        jobs = [await wait_job(usher_db, identity, timeout_s=120) for identity in identities]
    finally:
        acme.state.error_rate = 0.0
        acme.state.fail_next.clear()
    assert [job.status for job in jobs] == [JobStatus.succeeded] * len(PEOPLE)
    for email in PEOPLE:
        assert len(acme.state.users_with_email(email)) == 1, email

    details = [await job_detail(usher, connected, job.id) for job in jobs]
    actions = [a for d in details for a in d["actions"]]
    retried = [
        a for a in actions if a["status"] == "failed" and "the app answered 500" in a["error"]
    ]
    assert retried, "the invite form failed, at least, so some actions were retried"
    assert all("transient" in a["error"] or "answered 500" in a["error"] for a in retried)
    create = (ROOT / "flows" / "acme" / "create_user.yaml").read_bytes()
    digests = {a["flow_sha256"] for a in actions if a["name"] == "create_user"}
    assert digests == {hashlib.sha256(create).hexdigest()}
