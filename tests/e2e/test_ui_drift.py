"""UI drift end to end, on SQLite and PostgreSQL: Acme's next release (`v2`) renames its
"Invite user" link to "Add user". Through the real worker, create_user's fallback still
makes the account; the run, the integration and its webhook say it is degraded, once, and
`usher flows drift` names the step to update."""

import httpx

from engine.apps.webhooks import set_webhook
from engine.storage.db import Database
from engine.storage.models import JobStatus
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import fetch, job_detail, scim_post, wait_job
from tests.harness import Connected, Usher, wait_for
from tests.operators import usher_cli
from tests.webhooks import Receiver

INVITE = "role='link', name='Invite user'"
ADD = "role='link', name='Add user'"
STEP = "Open the invite form"
DEGRADED = "integration.degraded"


async def hook(usher: Usher, db: Database, connected: Connected, receiver: Receiver) -> None:
    """Send the integration's alerts to the receiver, which learns the secret."""
    vault = Vault.from_path(usher.settings.vault_key_path)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/drift"
    async with db.session() as session:
        receiver.secret = await set_webhook(session, vault, connected.id, url, actor="tests")


async def create(db: Database, connected: Connected, acme: AcmeServer, email: str) -> str:
    """Assign a user as Okta does; return the job that made the account in Acme."""
    response = await scim_post(connected, okta_user(email, "Drift", "Tested"))
    assert response.status_code == 201, response.text
    job = await wait_job(db, response.json()["id"])
    assert job.status == JobStatus.succeeded, job.error
    assert len(acme.state.users_with_email(email)) == 1
    return job.id


def operator_get(usher: Usher, connected: Connected, path: str) -> dict:
    """Read an operator API answer."""
    headers = {"Authorization": f"Bearer {connected.operator}"}
    response = httpx.get(f"{usher.api}{path}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def health_naming(usher: Usher, connected: Connected, job_id: str) -> dict:
    """Wait until the integration's health names a job (the worker brings it up to date
    just after the job ends); return the integration as the API shows it."""
    shown: dict = {}

    def named() -> bool:
        nonlocal shown
        shown = operator_get(usher, connected, f"/api/integrations/{connected.id}")
        return job_id in (shown["health_detail"] or "")

    wait_for(named, 30, f"the integration's health to name job {job_id}")
    return shown


def degraded_alerts(receiver: Receiver) -> list[dict]:
    """Return the bodies of the degraded alerts the receiver took."""
    return [r["body"] for r in receiver.received if r["body"]["event"] == DEGRADED]


async def test_acme_v2_is_provisioned_through_the_fallback_and_reported_degraded(
    usher: Usher,
    usher_db: Database,
    acme: AcmeServer,
    connected: Connected,
    receiver: Receiver,
) -> None:
    """The job succeeds; its create_user run is degraded with the locator that failed and
    the step's screenshot; the integration turns degraded, saying which step; the webhook
    gets one signed degraded alert for two such jobs; `usher flows drift acme` lists it."""
    await hook(usher, usher_db, connected, receiver)
    acme.state.v2 = True
    first = await create(usher_db, connected, acme, "drift.first@example.com")

    detail = await job_detail(usher, connected, first)
    assert detail["degraded"] is True
    by_name = {action["name"]: action for action in detail["actions"]}
    assert by_name["login"]["degraded"] is False
    made = by_name["create_user"]
    assert (made["status"], made["degraded"]) == ("succeeded", True)
    [step] = [s for s in made["steps"] if s["name"] == STEP]
    assert (step["status"], step["failed_locator"], step["locator"]) == ("ok", INVITE, ADD)
    [shot] = [e for e in step["evidence"] if e["kind"] == "screenshot"]
    assert (await fetch(usher, connected, shot["url"])).startswith(b"\x89PNG")
    assert all(s["failed_locator"] is None for s in made["steps"] if s["name"] != STEP)

    shown = health_naming(usher, connected, first)
    assert shown["health"] == "degraded"
    assert shown["health_detail"].startswith(
        f"step '{STEP}' of create_user matched only through its fallback since"
    )
    assert f"{INVITE} found nothing" in shown["health_detail"]

    second = await create(usher_db, connected, acme, "drift.second@example.com")
    assert health_naming(usher, connected, second)["health"] == "degraded"
    queued = operator_get(usher, connected, f"/api/integrations/{connected.id}/webhook")
    assert [d["event"] for d in queued["deliveries"]] == [DEGRADED]
    drift = usher_cli(usher, "flows", "drift", "acme", "--integration", connected.id)
    assert drift.exit_code == 0, drift.output
    assert f"create_user: step '{STEP}'" in drift.output
    assert f"failed    {INVITE}" in drift.output and f"matched   {ADD}" in drift.output
    assert "seen      2 time(s)" in drift.output
    assert f"job       {second}" in drift.output

    wait_for(lambda: degraded_alerts(receiver), 60, "the worker to deliver the degraded alert")
    [alert] = degraded_alerts(receiver)
    assert (alert["integration_id"], alert["job_id"]) == (connected.id, first)
    assert alert["health"] == "degraded" and STEP in alert["reason"]
    assert [(f["flow"], f["step"], f["failed_locator"]) for f in alert["fallbacks"]] == [
        ("create_user", STEP, INVITE)
    ]
    assert receiver.refused == []
