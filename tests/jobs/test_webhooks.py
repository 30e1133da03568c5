"""Alerts on SQLite and PostgreSQL: signed webhooks a local receiver checks, retried.

The receiver is a real HTTP server on a free port that verifies each delivery as a
customer's would (HMAC-SHA256 over `{timestamp}.{body}`, the replay window) and fails the
first delivery it gets.
"""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from engine.apps.webhooks import recent_deliveries, set_webhook
from engine.automation.errors import FlowFailed
from engine.constants import WEBHOOK_BACKOFF_S
from engine.jobs import alerts, state
from engine.jobs.breaker import Breaker
from engine.settings import Settings
from engine.storage import anchors
from engine.storage.db import Database
from engine.storage.models import DeliveryStatus, JobStatus, WebhookDelivery, utcnow
from engine.storage.vault import Vault
from tests.databases import run_apart
from tests.harness import Usher, wait_for
from tests.jobs.support import lapse, new_identity, running_job
from tests.operators import usher_cli
from tests.webhooks import Receiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Run a receiver that fails its first delivery, on a free port, for one test."""
    with running_receiver(fail=1) as server:
        yield server


def settings_in(tmp_path: Path) -> Settings:
    """Return Settings with the test's own data dir (the vault key and the anchor file)."""
    settings = Settings(data_dir=tmp_path / "var")
    settings.ensure_data_dir()
    return settings


async def alert_to_nowhere(database: Database, settings: Settings, integration_id: str) -> None:
    """Give an integration a webhook nobody listens on: its alerts are queued, never sent."""
    async with database.session() as session:
        await set_webhook(
            session,
            Vault.from_path(settings.vault_key_path),
            integration_id,
            "http://127.0.0.1:9/",
            actor="t",
        )


async def deliveries(database: Database, integration_id: str) -> list[WebhookDelivery]:
    """Return an integration's deliveries, newest first."""
    async with database.session() as session:
        return list(await recent_deliveries(session, integration_id))


async def test_a_failed_job_reaches_the_receiver_signed_and_is_retried(
    database: Database, receiver: Receiver, tmp_path: Path
) -> None:
    """The job fails without waiting on anyone; the worker's pass sends a signed alert the
    receiver refuses with 500; the next pass, after the back-off, is received and recorded."""
    settings = settings_in(tmp_path)
    vault = Vault.from_path(settings.vault_key_path)
    identity = await new_identity(database)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/usher"
    async with database.session() as session:
        receiver.secret = await set_webhook(
            session, vault, identity.integration_id, url, actor="alice"
        )
    claimed = await running_job(database, identity, worker="w-alerts")
    assert claimed.lease is not None and claimed.job is not None
    await state.finish(database, claimed.lease, JobStatus.failed, "the app said no")
    [queued] = await deliveries(database, identity.integration_id)
    assert queued.status == DeliveryStatus.pending and queued.event == "job.failed"
    assert receiver.received == []

    assert await alerts.deliver_due(database, vault, settings) == 0
    [first] = receiver.received
    assert receiver.refused == []
    [tried] = await deliveries(database, identity.integration_id)
    assert (tried.status, tried.attempts, tried.last_code) == (DeliveryStatus.pending, 1, 500)
    assert tried.next_at >= utcnow() + timedelta(seconds=WEBHOOK_BACKOFF_S[0] * 0.5)
    assert await alerts.deliver_due(database, vault, settings) == 0
    assert len(receiver.received) == 1

    later = tried.next_at + timedelta(seconds=1)
    assert await alerts.deliver_due(database, vault, settings, now=later) == 1
    assert len(receiver.received) == 2
    second = receiver.received[1]
    assert first["id"] == second["id"] == tried.id
    body = second["body"]
    assert body["event"] == "job.failed" and body["integration_id"] == identity.integration_id
    assert body["job"] == {
        "id": claimed.job.id,
        "status": "failed",
        "attempt": 1,
        "error": "the app said no",
        "identity": identity.user_name,
    }
    anchor = anchors.parse(body["audit_anchor"])
    assert anchors.genuine(anchors.audit_key(settings), anchor)
    [done] = await deliveries(database, identity.integration_id)
    assert (done.status, done.attempts, done.last_code) == (DeliveryStatus.delivered, 2, 204)


async def test_only_jobs_that_need_a_person_and_a_broken_integration_alert(
    database: Database, tmp_path: Path
) -> None:
    """A success alerts nobody; a blocked job, a job whose dead worker's lease lapsed on its
    last attempt and an opened breaker do; an integration with no webhook queues nothing."""
    settings = settings_in(tmp_path)
    silent = await new_identity(database)
    nobody = await running_job(database, silent)
    assert nobody.lease is not None
    await state.finish(database, nobody.lease, JobStatus.blocked, "no webhook here")
    assert await deliveries(database, silent.integration_id) == []

    identity = await new_identity(database)
    await alert_to_nowhere(database, settings, identity.integration_id)
    ok = await running_job(database, identity)
    assert ok.lease is not None
    await state.finish(database, ok.lease, JobStatus.succeeded, None)
    assert await deliveries(database, identity.integration_id) == []
    parked = await running_job(database, identity)
    assert parked.lease is not None
    await state.finish(database, parked.lease, JobStatus.blocked, "no such role")
    reclaimed = await running_job(database, identity)
    assert reclaimed.job is not None
    await lapse(database, reclaimed.job.id)
    assert await state.reclaim(database, reclaimed.job.id, max_attempts=1) == JobStatus.failed
    breaker = Breaker(database, identity.integration_id, threshold=1)
    await breaker.refused(FlowFailed("the password was refused"))
    events = [d.event for d in await deliveries(database, identity.integration_id)]
    assert sorted(events) == ["integration.broken", "job.blocked", "job.failed"]


def test_set_webhook_shows_the_secret_once_and_show_lists_deliveries(tmp_path: Path) -> None:
    """`usher integrations set-webhook` prints the secret; `show` lists each delivery."""
    settings = settings_in(tmp_path)

    async def one_alert() -> str:
        """Queue one alert for a fresh integration in the data dir's own database."""
        database = Database.from_settings(settings)
        await database.migrate()
        try:
            identity = await new_identity(database)
            await alert_to_nowhere(database, settings, identity.integration_id)
            claimed = await running_job(database, identity)
            assert claimed.lease is not None
            await state.finish(database, claimed.lease, JobStatus.action_required, "CAPTCHA")
            return identity.integration_id
        finally:
            await database.dispose()

    integration_id = run_apart(one_alert)
    runner = CliRunner()
    data_dir = ["--data-dir", str(settings.data_dir)]
    url = "https://alerts.example.com/usher"
    result = runner.invoke(app, ["integrations", "set-webhook", integration_id, url, *data_dir])
    assert result.exit_code == 0, result.output
    assert "secret   usher_whsec_" in result.output
    shown = runner.invoke(app, ["integrations", "show", integration_id, *data_dir])
    assert shown.exit_code == 0, shown.output
    assert f"webhook      {url}" in shown.output
    assert "job.action_required" in shown.output and "pending" in shown.output
    assert "usher_whsec_" not in shown.output


def test_the_served_worker_delivers_and_the_api_lists_the_deliveries(
    usher: Usher, receiver: Receiver
) -> None:
    """Through the real worker: a queued alert reaches the receiver, is retried after its
    first 500, and GET /api/integrations/{id}/webhook shows it delivered, never the secret."""
    bearer = usher_cli(usher, "tokens", "create", "--name", "alerts", "--role", "viewer")
    token = {"Authorization": f"Bearer {bearer.output.strip()}"}
    created = usher_cli(
        usher, "integrations", "create", "--app", "acme", "--base-url", "http://127.0.0.1:9"
    )
    integration_id = created.output.split()[1]
    url = f"http://127.0.0.1:{receiver.server_address[1]}/served"
    hooked = usher_cli(usher, "integrations", "set-webhook", integration_id, url)
    receiver.secret = hooked.output.split("secret   ")[1].split()[0]

    async def alert() -> None:
        """Queue one alert in the served database, as a job's failure would."""
        database = Database(usher.database_url)
        try:
            async with database.session() as session:
                await alerts.queue_alert(session, integration_id, "job.failed", {"job": None})
                await session.commit()
        finally:
            await database.dispose()

    run_apart(alert)
    with httpx.Client(base_url=usher.api, headers=token) as client:

        def delivered() -> bool:
            """Tell whether the API lists the delivery as delivered."""
            view = client.get(f"/api/integrations/{integration_id}/webhook").json()
            return bool(view["deliveries"]) and view["deliveries"][0]["status"] == "delivered"

        wait_for(delivered, 60, "the worker to deliver the alert after one retry")
        view = client.get(f"/api/integrations/{integration_id}/webhook")
        missing = client.get("/api/integrations/no-such-integration/webhook")
    assert missing.status_code == 404
    body = view.json()
    assert body["url"] == url and receiver.secret not in view.text
    [delivery] = body["deliveries"]
    assert (delivery["attempts"], delivery["last_code"]) == (2, 204)
    assert [r["id"] for r in receiver.received] == [delivery["id"]] * 2
    assert receiver.refused == []


async def ended_inventory(database: Database, integration_id: str, status: str) -> None:
    """Queue, claim and end one inventory of an integration with a status."""
    async with database.session() as session:
        job = await state.ensure_inventory(session, integration_id, actor="test")
        await session.commit()
    claimed = await state.claim(database, job.id, job.attempt, "w-inventory", lease_s=60)
    assert claimed.lease is not None
    await state.finish(database, claimed.lease, status, f"the inventory ended {status}")


async def test_an_inventory_failing_again_alerts_once_until_one_succeeds(
    database: Database, tmp_path: Path
) -> None:
    """An import retried while its app refuses alerts on its first failure only; after an
    inventory that succeeded, the next failure alerts again."""
    settings = settings_in(tmp_path)
    identity = await new_identity(database)
    await alert_to_nowhere(database, settings, identity.integration_id)
    for status in (JobStatus.failed, JobStatus.failed, JobStatus.blocked):
        await ended_inventory(database, identity.integration_id, status)
    assert [d.event for d in await deliveries(database, identity.integration_id)] == ["job.failed"]
    await ended_inventory(database, identity.integration_id, JobStatus.succeeded)
    await ended_inventory(database, identity.integration_id, JobStatus.blocked)
    events = [d.event for d in await deliveries(database, identity.integration_id)]
    assert events == ["job.blocked", "job.failed"]
