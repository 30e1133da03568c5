"""Operators retry and cancel jobs through the API; the state machine decides what may move."""

import httpx

from engine.apps.integrations import set_secrets
from engine.storage.db import Database
from engine.storage.models import JobStatus
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import connect_without_secrets, scim_post, wait_job
from tests.harness import Connected, Usher


async def operator_post(usher: Usher, connected: Connected, path: str) -> httpx.Response:
    """POST to the operator API with the operator token."""
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{usher.api}{path}", headers={"Authorization": f"Bearer {connected.operator}"}
        )


async def test_a_blocked_job_is_retried_after_the_operator_fixes_the_secrets(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Missing secrets park the job; once set, an operator's retry provisions the account."""
    unset = await connect_without_secrets(usher, usher_db, acme, connected)
    response = await scim_post(unset, okta_user("rita.retry@example.com", "Rita", "Retry"))
    identity = response.json()["id"]
    failed = await wait_job(usher_db, identity)
    assert failed.status == JobStatus.blocked

    refused = await operator_post(usher, unset, f"/api/jobs/{failed.id}/cancel")
    assert refused.status_code == 409
    assert "only a live job can be cancelled" in refused.json()["detail"]

    async with usher_db.session() as session:
        vault = Vault.from_path(usher.settings.vault_key_path)
        await set_secrets(session, usher.settings, vault, unset.id, acme.state.service_account())
    retried = await operator_post(usher, unset, f"/api/jobs/{failed.id}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempt"]) == ("queued", 2)

    job = await wait_job(usher_db, identity)
    assert (job.id, job.status, job.attempt) == (failed.id, JobStatus.succeeded, 2)
    assert len(acme.state.users_with_email("rita.retry@example.com")) == 1

    again = await operator_post(usher, unset, f"/api/jobs/{failed.id}/retry")
    assert again.status_code == 409
    assert "only a closed job can be retried" in again.json()["detail"]


async def test_retry_and_cancel_of_an_unknown_job_are_404(
    usher: Usher, connected: Connected
) -> None:
    """An unknown id is named, not a stack trace."""
    for verb in ("retry", "cancel"):
        response = await operator_post(usher, connected, f"/api/jobs/no-such-job/{verb}")
        assert response.status_code == 404
        assert response.json()["detail"] == "no job no-such-job"
