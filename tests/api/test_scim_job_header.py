"""A script follows a SCIM write: the job id in X-Usher-Job, then `usher jobs ...` on it."""

from datetime import UTC, datetime

from engine.apps.integrations import set_secrets
from engine.constants import JOB_ID_HEADER
from engine.storage.db import Database
from engine.storage.models import JobStatus
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import connect_without_secrets, scim_post, wait_job
from tests.harness import Connected, Usher
from tests.operators import usher_cli


async def test_a_scim_write_names_its_job_and_the_cli_follows_it(
    usher: Usher, usher_db: Database, connected: Connected
) -> None:
    """POST → X-Usher-Job; `jobs watch` prints each step live and exits 0 on success."""
    response = await scim_post(connected, okta_user("wanda.watch@example.com", "Wanda", "Watch"))
    assert response.status_code == 201, response.text
    job_id = response.headers[JOB_ID_HEADER]
    identity_id = response.json()["id"]

    watched = usher_cli(usher, "jobs", "watch", job_id)
    assert watched.exit_code == 0, watched.output
    lines = watched.stdout.splitlines()
    assert lines[0].startswith(f"job {job_id}: ")
    assert any("action create_user" in line for line in lines)
    assert any(line.strip().startswith("1.") and ".png" in line for line in lines)
    assert [line for line in lines if line.startswith("job ")][-1] == (
        f"job {job_id}: succeeded, attempt 1"
    )

    shown = usher_cli(usher, "jobs", "show", job_id)
    assert shown.exit_code == 0 and "create_user: succeeded" in shown.output
    listed = usher_cli(usher, "jobs", "list", "--integration", connected.id, "--state", "succeeded")
    assert job_id in listed.output and "wanda.watch@example.com" in listed.output
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    created = usher_cli(usher, "jobs", "list", "--action", "create_user", "--since", today)
    assert job_id in created.output
    for narrower in (["--action", "deactivate_user"], ["--until", today]):
        assert job_id not in usher_cli(usher, "jobs", "list", *narrower).output, narrower
    assert connected.id in usher_cli(usher, "integrations", "list").output

    again = await scim_post(connected, okta_user("wanda.watch@example.com", "Wanda", "Watch"))
    assert again.status_code == 409 and JOB_ID_HEADER not in again.headers
    refused = usher_cli(usher, "jobs", "cancel", job_id)
    assert refused.exit_code == 2 and "only a live job can be cancelled" in refused.output
    assert (await wait_job(usher_db, identity_id)).status == JobStatus.succeeded


async def test_an_operator_unblocks_an_identity_from_the_command_line(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Missing secrets block the job; once set, `identities unblock` provisions the account."""
    unset = await connect_without_secrets(usher, usher_db, acme, connected)
    response = await scim_post(unset, okta_user("ulla.unblock@example.com", "Ulla", "Unblock"))
    identity_id = response.json()["id"]
    blocked = await wait_job(usher_db, identity_id)
    assert blocked.id == response.headers[JOB_ID_HEADER]
    assert blocked.status == JobStatus.blocked
    listed = usher_cli(usher, "jobs", "list", "--state", "blocked", "--user", "ulla.unblock")
    assert blocked.id in listed.output

    async with usher_db.session() as session:
        vault = Vault.from_path(usher.settings.vault_key_path)
        await set_secrets(session, usher.settings, vault, unset.id, acme.state.service_account())
    unblocked = usher_cli(usher, "identities", "unblock", identity_id, queue=True)
    assert unblocked.exit_code == 0, unblocked.output
    assert unblocked.output.strip() == f"job {blocked.id} queued, attempt 2"
    assert (await wait_job(usher_db, identity_id)).status == JobStatus.succeeded
    assert len(acme.state.users_with_email("ulla.unblock@example.com")) == 1
    not_blocked = usher_cli(usher, "identities", "unblock", identity_id, queue=True)
    assert not_blocked.exit_code == 2 and "is not blocked" in not_blocked.output
