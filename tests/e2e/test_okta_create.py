"""The spine: an Okta SCIM create becomes a real Acme account, with screenshot evidence."""

import hashlib
import io

import httpx
from arq.connections import create_pool
from PIL import Image, ImageColor
from playwright.async_api import async_playwright
from sqlmodel import select

from engine.automation.browser import find_chromium
from engine.constants import MASK_COLOR, QUEUE_NAME
from engine.jobs.queue import redis_settings
from engine.storage.db import Database
from engine.storage.models import AppAccount, Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import fetch, job_detail, scim_post, wait_job
from tests.harness import Connected, Usher


async def password_box(acme: AcmeServer) -> dict:
    """Return where Acme's password field sits on a 1280x800 sign-in page."""
    async with async_playwright() as playwright:
        from engine.settings import Settings

        path = find_chromium(Settings(), playwright)
        browser = await playwright.chromium.launch(executable_path=str(path) if path else None)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(f"{acme.url}/login")
        box = await page.get_by_label("Password").bounding_box()
        await browser.close()
    assert box is not None
    return box


def all_steps(detail: dict) -> list[dict]:
    """Return every step of every action of a job."""
    return [step for action in detail["actions"] for step in action["steps"]]


async def test_okta_create_becomes_an_acme_account(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """SCIM create → job succeeded → one Acme account, evidence for every step, no secret leaked."""
    response = await scim_post(connected, okta_user("dana.demo@example.com"))
    assert response.status_code == 201, response.text
    assert "password" not in response.json()
    identity_id = response.json()["id"]

    job = await wait_job(usher_db, identity_id)
    detail = await job_detail(usher, connected, job.id)
    assert job.status == JobStatus.succeeded, job.error

    accounts = acme.state.users_with_email("dana.demo@example.com")
    assert len(accounts) == 1
    assert (accounts[0].first_name, accounts[0].last_name) == ("Dana", "Demo")
    async with usher_db.session() as session:
        query = select(AppAccount).where(AppAccount.identity_id == identity_id)
        account = (await session.exec(query)).one()
    assert account.app_key == accounts[0].id
    assert account.exists and account.active

    assert [a["name"] for a in detail["actions"]] == ["login", "create_user"], (
        "the invite form set every attribute the IdP gave (create_sets): no update after it"
    )
    assert all(s["status"] == "ok" for s in detail["actions"][1]["steps"])
    assert account.attributes["email"] == "dana.demo@example.com"
    steps = all_steps(detail)
    for step in steps:
        shots = [e for e in step["evidence"] if e["kind"] == "screenshot"]
        assert len(shots) == 1, step
        data = await fetch(usher, connected, shots[0]["url"])
        assert hashlib.sha256(data).hexdigest() == shots[0]["sha256"]
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.size == (1280, 800)

    async with httpx.AsyncClient() as client:
        for headers in ({}, {"Authorization": f"Bearer {connected.token}"}):
            refused = await client.get(steps[0]["evidence"][0]["url"], headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"

    login = detail["actions"][0]["steps"]
    typed = next(s for s in login if s["name"] == "Type the password")
    shot = next(e for e in typed["evidence"] if e["kind"] == "screenshot")
    image = Image.open(io.BytesIO(await fetch(usher, connected, shot["url"]))).convert("RGB")
    box = await password_box(acme)
    centre = (int(box["x"] + box["width"] / 2), int(box["y"] + box["height"] / 2))
    mask = ImageColor.getrgb(MASK_COLOR)
    assert image.getpixel(centre) == mask
    assert image.getpixel((int(box["x"]) + 3, int(box["y"]) + 3)) == mask

    secrets = [acme.state.password, acme.state.totp_seed, *acme.state.sessions]
    assert acme.state.sessions, "Acme issued no session cookie"
    haystacks = {"logs": usher.logs().encode()}
    for path in usher.settings.data_dir.glob("usher.db*"):
        haystacks[path.name] = path.read_bytes()
    for path in usher.settings.evidence_dir.rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes()
    for name, haystack in haystacks.items():
        for secret in secrets:
            assert secret.encode() not in haystack, f"a secret leaked into {name}"


async def test_existing_account_is_recorded_not_duplicated(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """A user already in Acme: the job succeeds with an 'already exists' step and screenshot."""
    existing = acme.state.add_user(
        "erin.early@example.com", "Erin", "Early", roles={"Billing"}, plan="Pro", active=False
    )
    response = await scim_post(connected, okta_user("erin.early@example.com", "Erin", "Early"))
    assert response.status_code == 201, response.text
    job = await wait_job(usher_db, response.json()["id"])
    detail = await job_detail(usher, connected, job.id)
    assert job.status == JobStatus.succeeded, job.error

    create = next(a for a in detail["actions"] if a["name"] == "create_user")
    assert create["status"] == "succeeded"
    assert [a["name"] for a in detail["actions"]][-1] == "update_user", (
        "an account found already there may differ: the update checks it"
    )
    already = [s for s in create["steps"] if s["status"] == "already"]
    assert [s["name"] for s in already] == ["Account already exists"]
    assert [s["name"] for s in create["steps"] if s["name"].startswith("Read the")] == [
        "Read the status Acme shows",
        "Read the roles Acme shows",
        "Read the plan Acme shows",
    ]
    assert any(e["kind"] == "screenshot" for e in already[0]["evidence"])
    assert len(acme.state.users_with_email("erin.early@example.com")) == 1
    async with usher_db.session() as session:
        query = select(AppAccount).where(AppAccount.identity_id == response.json()["id"])
        account = (await session.exec(query)).one()
    assert account.app_key == existing.id
    assert account.observed_active is False, "found deactivated: observed, not assumed"
    assert set(account.observed_entitlements) == {"billing", "plan-pro"}


async def test_ten_changes_before_the_worker_runs_are_one_job(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Ten SCIM changes while the worker is paused: one job row, one queued arq job."""
    with usher.own_worker_paused():
        response = await scim_post(connected, okta_user("fay.flux@example.com", "Fay", "Flux"))
        assert response.status_code == 201, response.text
        user = response.json()
        async with httpx.AsyncClient() as client:
            for n in range(9):
                user["name"]["familyName"] = f"Flux{n}"
                put = await client.put(
                    f"{connected.scim_url}/Users/{user['id']}",
                    json=user,
                    headers={"Authorization": f"Bearer {connected.token}"},
                )
                assert put.status_code == 200, put.text
        async with usher_db.session() as session:
            jobs = (await session.exec(select(Job).where(Job.identity_id == user["id"]))).all()
        assert len(jobs) == 1 and jobs[0].status == JobStatus.queued
        pool = await create_pool(redis_settings(usher.redis_url))
        queued = await pool.queued_jobs(queue_name=QUEUE_NAME)
        await pool.aclose()
        assert [j.job_id for j in queued if j.job_id.startswith(jobs[0].id)] == [f"{jobs[0].id}:1"]
    job = await wait_job(usher_db, user["id"])
    assert job.status == JobStatus.succeeded
    accounts = acme.state.users_with_email("fay.flux@example.com")
    assert [(a.first_name, a.last_name) for a in accounts] == [("Fay", "Flux8")]
