"""Break-glass admins and the service account are never touched, whatever the IdP says."""

import subprocess
import sys

import httpx

from engine.storage.db import Database
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user, sample
from tests.e2e.support import job_detail, scim_post, wait_job
from tests.harness import ROOT, Connected, Usher


def usher_cli(usher: Usher, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `usher` command on the session's data dir."""
    env = {
        "USHER_DATA_DIR": str(usher.settings.data_dir),
        "USHER_DATABASE_URL": usher.database_url,
        "PATH": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_protected_account_is_never_touched(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Listed with `usher integrations set-protected`: no create, no deactivation, no grant."""
    acme.state.add_user("vip@example.com", "Vera", "Important", roles={"Admin"})
    listed = usher_cli(usher, "integrations", "set-protected", connected.id, "VIP@example.com")
    assert listed.returncode == 0, listed.stderr
    assert "vip@example.com" in listed.stdout.lower()

    body = okta_user("vip@example.com", "Vera", "Important") | {"entitlements": []}
    response = await scim_post(connected, body)
    assert response.status_code == 201, response.text
    identity = response.json()["id"]
    job = await wait_job(usher_db, identity)
    assert job.status == JobStatus.succeeded, job.error
    assert (await job_detail(usher, connected, job.id))["actions"] == []

    async with httpx.AsyncClient() as client:
        patched = await client.patch(
            f"{connected.scim_url}/Users/{identity}",
            json=sample("okta", "deactivate"),
            headers={"Authorization": f"Bearer {connected.token}"},
        )
    assert patched.status_code in (200, 204), patched.text
    job = await wait_job(usher_db, identity)
    assert (await job_detail(usher, connected, job.id))["actions"] == []
    [vip] = acme.state.users_with_email("vip@example.com")
    assert vip.active and "Admin" in vip.roles

    plan = usher_cli(usher, "plan", "--integration", connected.id, "--user", "vip@example.com")
    assert plan.returncode == 0, plan.stderr
    assert "protected" in plan.stdout
