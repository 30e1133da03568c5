"""A job's page: steps arrive live over server-sent events, screenshots open full size,
admins retry, viewers only read."""

import httpx
from playwright.sync_api import Page, Request, Response, expect
from sqlmodel import select

from engine.constants import CSRF_HEADER, JOB_ID_HEADER
from engine.storage.db import Database
from engine.storage.models import AuditEvent
from fixtures.acme.server import AcmeServer
from tests.databases import run_apart
from tests.harness import Usher
from tests.operators import Account
from tests.pages.conftest import (
    link_acme,
    post_user,
    set_all_secrets,
    shoot,
    sign_in,
    wait_state,
)


async def audit_actors(url: str, job_id: str) -> set[str]:
    """Return who the audit chain names for a job's events."""
    db = Database(url)
    try:
        async with db.reader() as session:
            query = select(AuditEvent.actor).where(AuditEvent.job_id == job_id)
            return set((await session.exec(query)).all())
    finally:
        await db.dispose()


def test_a_running_job_shows_its_steps_live_and_its_screenshots_full_size(
    usher: Usher, page: Page, admin: Account, acme: AcmeServer
) -> None:
    """Open a queued job, let the worker run it: steps come in without reloading the page."""
    linked = link_acme(usher, acme)
    sign_in(page, usher, admin)
    timeline_fetches: list[str] = []
    navigations: list[str] = []
    with usher.own_worker_paused():
        created = post_user(linked, "lena.live@example.com")
        job_id = created.headers[JOB_ID_HEADER]
        page.goto(f"{usher.api}/jobs/{job_id}")
        expect(page.locator("#timeline")).to_have_attribute("data-live", "true")
        expect(page.locator("li.step")).to_have_count(0)

        def fetched(response: Response) -> None:
            if response.url.endswith(f"/jobs/{job_id}/timeline"):
                timeline_fetches.append(response.text())

        page.on("response", fetched)
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=90_000)
    assert any('class="step ok"' in html for html in timeline_fetches), "no step came live"
    assert len(navigations) == 1, "the page reloads once, when the job ends"
    expect(page.locator("li.step").first).to_be_visible()
    shoot(page, "job")
    page.goto(f"{usher.api}/integrations/{linked.id}/activity?action=create_user")
    expect(page.locator(f'tr[data-job="{job_id}"]')).to_contain_text("create_user")
    page.go_back()

    thumbnail = page.locator("a.shot img").first
    width = thumbnail.evaluate("img => img.getBoundingClientRect().width")
    thumbnail.click()
    full = page.locator("dialog#lightbox img")
    expect(full).to_be_visible()
    assert full.evaluate("img => img.getBoundingClientRect().width") > 3 * width
    shoot(page, "job-screenshot-full-size", full_page=False)
    page.keyboard.press("Escape")
    expect(full).to_be_hidden()


def test_an_admin_retries_a_blocked_job_and_a_viewer_cannot(
    usher: Usher,
    page: Page,
    admin: Account,
    viewer: Account,
    admin_token: str,
    signed_in_client,
    acme: AcmeServer,
) -> None:
    """A viewer sees no button and the API refuses them; the admin's Retry provisions it,
    and the audit chain names the admin."""
    linked = link_acme(usher, acme, secrets=False)
    job_id = post_user(linked, "rory.retry@example.com").headers[JOB_ID_HEADER]
    wait_state(usher, admin_token, job_id, {"blocked"})

    sign_in(page, usher, viewer, f"/jobs/{job_id}")
    expect(page.locator("#job-state")).to_have_text("blocked")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    expect(page.get_by_role("button", name="Unblock")).to_have_count(0)
    shoot(page, "job-blocked-as-viewer")
    client, csrf = signed_in_client(viewer)
    refused = client.post(f"/api/jobs/{job_id}/retry", headers={CSRF_HEADER: csrf})
    assert refused.status_code == 403
    form_post = client.post(f"/jobs/{job_id}/retry", data={"csrf": csrf})
    assert form_post.status_code == 403

    page.context.clear_cookies()
    sign_in(page, usher, admin, f"/jobs/{job_id}")
    expect(page.get_by_role("button", name="Unblock")).to_be_visible()
    set_all_secrets(usher, acme, linked)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=90_000)
    posted = next(r for r in requests if r.method == "POST")
    assert "csrf=" in (posted.post_data or "")
    expect(page.get_by_role("heading", name="Attempt 2")).to_be_visible()
    shoot(page, "job-retried")
    assert len(acme.state.users_with_email("rory.retry@example.com")) == 1
    url = usher.settings.resolved_database_url
    assert admin.username in run_apart(lambda: audit_actors(url, job_id))
    assert httpx.get(f"{usher.api}/jobs/{job_id}").status_code in (303, 307)
