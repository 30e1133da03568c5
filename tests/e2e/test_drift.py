"""Drift and onboarding end to end: real workers read Acme's directory with list_users.

An account made in Acme behind Usher's back is reported as an orphan and left alone; an
Acme that already holds twenty people is onboarded without a second invite and without
taking away a role anyone held; `usher reconcile` and `usher drift` print what was found.
"""

import asyncio
import json
import subprocess
import sys
import time

import httpx
from sqlmodel import col, select

from engine.apps.integrations import set_ownership, set_secrets
from engine.jobs.inventory import IMPORT_WAIT
from engine.storage.db import Database
from engine.storage.models import Action, Integration, Job, JobKind, JobStatus, Onboarding
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import job_detail, scim_post, wait_job
from tests.harness import ROOT, Connected, Usher, connect_acme

PEOPLE = 20
"""The accounts Acme holds before Usher is connected."""
ROLES = ("Editor", "Billing", "Admin", "Viewer")
WAIT_S = 240.0
"""Twenty jobs through one worker's two slots on a loaded machine."""


def usher_cli(usher: Usher, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `usher` command on the session's data dir, database and Redis."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=usher.worker_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )


async def api_get(usher: Usher, connected: Connected, path: str) -> httpx.Response:
    """GET an operator API path with the operator token."""
    async with httpx.AsyncClient(timeout=30.0) as client:
        return await client.get(
            f"{usher.api}{path}", headers={"Authorization": f"Bearer {connected.operator}"}
        )


async def inventory_jobs(db: Database, integration_id: str) -> list[Job]:
    """Return an integration's inventory jobs, oldest first."""
    async with db.session() as session:
        query = (
            select(Job)
            .where(Job.integration_id == integration_id, Job.kind == JobKind.inventory)
            .order_by(col(Job.created_at))
        )
        return list((await session.exec(query)).all())


async def wait_status(db: Database, identity_id: str, status: str) -> Job:
    """Wait until the identity's newest job is in a state."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        async with db.session() as session:
            query = select(Job).where(Job.identity_id == identity_id)
            jobs = sorted((await session.exec(query)).all(), key=lambda j: j.created_at)
        if jobs and jobs[-1].status == status:
            return jobs[-1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"identity {identity_id}'s job never became {status}")


async def test_an_orphan_made_behind_ushers_back_is_reported_and_left_alone(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Ann is Usher's; Olly was added in Acme by hand; the VIP is protected. The inventory
    lists Olly as an orphan and the VIP apart, and changes neither, though the integration
    is authoritative (remediation is off)."""
    response = await scim_post(connected, okta_user("ann.drift@example.com", "Ann", "Drift"))
    assert response.status_code == 201, response.text
    ann = await wait_job(usher_db, response.json()["id"])
    assert ann.status == JobStatus.succeeded, ann.error
    olly = acme.state.add_user("olly.orphan@example.com", "Olly", "Orphan", roles={"Admin"})
    vip = acme.state.add_user("vip.drift@example.com", "Vera", "Important", roles={"Admin"})
    async with usher_db.session() as session:
        await set_ownership(
            session,
            connected.id,
            authoritative=True,
            protected_accounts=["VIP.drift@example.com"],
            actor="test",
        )

    reconciled = usher_cli(usher, "reconcile", "--integration", connected.id)

    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    out = reconciled.stdout
    assert f"  olly.orphan@example.com ({olly.id}): active; holds admin, plan-free" in out
    assert "  vip.drift@example.com (listed in the app)" in out
    assert "differing    0 (otherwise than Usher granted)" in out
    assert "missing      0 (identities the app does not list)" in out
    assert "remediation  reported only: remediation is off" in out
    assert olly.active and olly.roles == {"Admin"}, "an orphan is reported, never touched"
    assert vip.active and vip.roles == {"Admin"}

    (run,) = await inventory_jobs(usher_db, connected.id)
    assert run.status == JobStatus.succeeded and run.identity_id is None
    activity = usher_cli(usher, "jobs", "list", "--integration", connected.id)
    (line,) = [row for row in activity.stdout.splitlines() if run.id in row]
    assert line.endswith("succeeded          1  inventory: login, list_users"), line
    detail = await job_detail(usher, connected, run.id)
    assert [a["name"] for a in detail["actions"]] == ["login", "list_users"]
    read = detail["actions"][1]["steps"]
    assert read[-1]["name"] == "Read every account" and read[-1]["status"] == "ok"
    assert all(s["evidence"] for s in read), "every step of the run has its screenshot"

    answer = await api_get(usher, connected, f"/api/integrations/{connected.id}/drift")
    assert answer.status_code == 200, answer.text
    drift = answer.json()
    assert drift["onboarding"] == "ready" and drift["report"]["job_id"] == run.id
    findings = drift["report"]["findings"]
    orphans = {o["label"]: o for o in findings["orphans"]}
    assert orphans["olly.orphan@example.com"]["key"] == olly.id
    assert "ann.drift@example.com" not in orphans and "vip.drift@example.com" not in orphans
    assert [p["name"] for p in findings["protected"]] == ["vip.drift@example.com"]
    assert findings["matched"] == 1
    assert set(drift) == {
        "integration_id",
        "onboarding",
        "remediate",
        "authoritative",
        "next_inventory_at",
        "report",
    }

    shown = usher_cli(usher, "drift", "--integration", connected.id)
    assert shown.returncode == 0, shown.stderr
    assert f"job {run.id}: {len(acme.state.users)} account(s) listed, 1 matched" in shown.stdout
    assert f"  olly.orphan@example.com ({olly.id}): active; holds admin, plan-free" in shown.stdout

    viewer = await api_get(usher, connected, "/api/integrations/nope/drift")
    assert viewer.status_code == 404 and "no integration 'nope'" in viewer.text
    async with httpx.AsyncClient() as client:
        anonymous = await client.get(f"{usher.api}/api/integrations/{connected.id}/drift")
    assert anonymous.status_code == 401


def held_before(acme: AcmeServer) -> dict[str, tuple[set[str], str]]:
    """Fill Acme with the people it holds before Usher; return each one's roles and plan."""
    held = {}
    for n in range(PEOPLE):
        roles = {ROLES[n % len(ROLES)], ROLES[(n + 1) % len(ROLES)]} if n % 2 else set()
        plan = ("Free", "Pro", "Enterprise")[n % 3]
        user = acme.state.add_user(f"person{n:02d}@example.com", "Person", f"N{n:02d}", roles, plan)
        held[user.email] = (set(user.roles), user.plan)
    return held


async def onboard(usher: Usher, acme: AcmeServer, connected: Connected, n: int) -> str:
    """Push one of Acme's people from the IdP (the email in another case); return its id."""
    body = okta_user(f"Person{n:02d}@Example.com", "Person", f"N{n:02d}")
    if n % 3 == 0:
        body["entitlements"] = [{"value": "viewer"}]
    response = await scim_post(connected, body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_an_acme_with_twenty_people_is_onboarded_without_a_second_invite(
    usher: Usher, usher_db: Database, acme: AcmeServer
) -> None:
    """Connected while Acme holds twenty people: the integration imports them before it
    plans. Ten users the IdP pushes meanwhile wait for the import; ten more arrive after.
    Nobody is invited twice, and every role anyone held is still held."""
    held = held_before(acme)
    connected = await connect_acme(usher, usher_db, acme, import_accounts=True, secrets=False)
    listed = usher_cli(usher, "integrations", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (mine,) = [row for row in json.loads(listed.stdout) if row["id"] == connected.id]
    assert mine["onboarding"] == "importing"
    shown = usher_cli(usher, "integrations", "show", connected.id)
    assert "onboarding   importing: plans nothing until the accounts already in the app" in (
        shown.stdout
    )
    lacking = usher_cli(usher, "reconcile", "--integration", connected.id)
    assert lacking.returncode == 2
    assert f"integration {connected.id} lacks secrets admin_username" in lacking.stderr

    early = [await onboard(usher, acme, connected, n) for n in range(PEOPLE // 2)]
    for identity in early:
        waiting = await wait_status(usher_db, identity, JobStatus.waiting)
        assert waiting.error == IMPORT_WAIT
    assert all(len(acme.state.users_with_email(e)) == 1 for e in held), "nothing ran yet"

    async with usher_db.session() as session:
        vault = Vault.from_path(usher.settings.vault_key_path)
        secrets = acme.state.service_account()
        await set_secrets(session, usher.settings, vault, connected.id, secrets)
    for identity in early:
        job = await wait_job(usher_db, identity, timeout_s=WAIT_S)
        assert job.status == JobStatus.succeeded, job.error
    late = [await onboard(usher, acme, connected, n) for n in range(PEOPLE // 2, PEOPLE)]
    for identity in late:
        job = await wait_job(usher_db, identity, timeout_s=WAIT_S)
        assert job.status == JobStatus.succeeded, job.error

    for email, (roles, plan) in held.items():
        (account,) = acme.state.users_with_email(email)
        assert roles <= account.roles, f"{email} lost a role it held"
        assert account.plan == plan
    granted = [acme.state.users_with_email(f"person{n:02d}@example.com")[0] for n in (0, 3)]
    assert all("Viewer" in account.roles for account in granted), "the IdP's grant still runs"

    async with usher_db.session() as session:
        integration = await session.get(Integration, connected.id)
        assert integration is not None and integration.onboarding == Onboarding.ready
        creates = (
            await session.exec(
                select(Action)
                .join(Job, col(Job.id) == col(Action.job_id))
                .where(Job.integration_id == connected.id, Action.name == "create_user")
            )
        ).all()
    assert creates == [], "every account was found by the import: no create ran"
    (imported,) = await inventory_jobs(usher_db, connected.id)
    assert imported.status == JobStatus.succeeded
    answer = await api_get(usher, connected, f"/api/integrations/{connected.id}/drift")
    report = answer.json()["report"]
    assert report["imported"] and report["job_id"] == imported.id
    assert report["findings"]["matched"] == PEOPLE // 2
    assert report["findings"]["remediation"]["ran"] is False


async def test_an_authoritative_integration_that_opted_in_remedies_the_drift(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Editor taken from Ann in Acme, Olly added there: with `set-remediate on` on an
    authoritative integration, the inventory queues Ann's job, which grants Editor again,
    and deactivates every orphan but the protected VIP."""
    body = okta_user("ann.remedy@example.com", "Ann", "Remedy")
    body["entitlements"] = [{"value": "editor"}]
    response = await scim_post(connected, body)
    assert response.status_code == 201, response.text
    ann_id = response.json()["id"]
    first = await wait_job(usher_db, ann_id)
    assert first.status == JobStatus.succeeded, first.error
    (ann,) = acme.state.users_with_email("ann.remedy@example.com")
    ann.roles.discard("Editor")
    olly = acme.state.add_user("olly.remedy@example.com", "Olly", "Orphan")
    vip = acme.state.add_user("vip.remedy@example.com", "Vera", "Important")
    async with usher_db.session() as session:
        await set_ownership(
            session,
            connected.id,
            authoritative=True,
            protected_accounts=["vip.remedy@example.com"],
            actor="test",
        )
    opted = usher_cli(usher, "integrations", "set-remediate", connected.id, "on")
    assert opted.returncode == 0, opted.stderr
    assert "drift is remedied: differing identities reconciled, orphans deactivated" in (
        opted.stdout
    )

    reconciled = usher_cli(usher, "reconcile", "--integration", connected.id)

    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "  ann.remedy@example.com: granted, not shown: editor" in reconciled.stdout
    orphans = [u for u in acme.state.users.values() if u.email not in (ann.email, vip.email)]
    assert f"remediation  1 job(s) queued, {len(orphans)} orphan(s) deactivated" in (
        reconciled.stdout
    )
    assert not olly.active and all(not u.active for u in orphans)
    assert vip.active, "a protected account is never touched"
    again = await wait_job(usher_db, ann_id)
    assert again.id != first.id and again.status == JobStatus.succeeded, again.error
    assert "Editor" in ann.roles
    (run,) = await inventory_jobs(usher_db, connected.id)
    detail = await job_detail(usher, connected, run.id)
    deactivations = [a for a in detail["actions"] if a["name"] == "deactivate_user"]
    assert {a["target"] for a in deactivations} == {u.id for u in orphans}
    assert all(a["status"] == "succeeded" for a in deactivations)
