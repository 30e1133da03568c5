"""A degraded integration's page: its health, the step that needed a fallback with its
screenshot, and the alert deliveries; the job's page marks the run and the step."""

import httpx
from playwright.sync_api import Page, expect

from engine.constants import JOB_ID_HEADER
from fixtures.acme.server import AcmeServer
from tests.harness import Usher, wait_for
from tests.operators import Account, usher_cli
from tests.pages.conftest import link_acme, post_user, shoot, sign_in, wait_state
from tests.webhooks import Receiver

INVITE = "role='link', name='Invite user'"
ADD = "role='link', name='Add user'"


def test_a_degraded_integration_shows_the_step_to_update_and_its_alerts(
    usher: Usher,
    page: Page,
    viewer: Account,
    admin_token: str,
    acme: AcmeServer,
    receiver: Receiver,
) -> None:
    """Acme v2 renames "Invite user": the job succeeds through the fallback; the page says
    degraded, names the step, shows its screenshot, and lists the delivered alert."""
    linked = link_acme(usher, acme)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/pages"
    hooked = usher_cli(usher, "integrations", "set-webhook", linked.id, url)
    assert hooked.exit_code == 0, hooked.output
    receiver.secret = hooked.output.split("secret   ")[1].split()[0]
    acme.state.v2 = True
    created = post_user(linked, "vera.v2@example.com")
    assert created.status_code == 201, created.text
    job_id = created.headers[JOB_ID_HEADER]
    assert (
        wait_state(usher, admin_token, job_id, {"succeeded", "blocked", "failed"})["status"]
        == "succeeded"
    )
    assert len(acme.state.users_with_email("vera.v2@example.com")) == 1

    def delivered() -> bool:
        """Tell whether the API lists the degraded alert as delivered."""
        view = httpx.get(
            f"{usher.api}/api/integrations/{linked.id}/webhook",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=30,
        ).json()
        return any(
            d["event"] == "integration.degraded" and d["status"] == "delivered"
            for d in view["deliveries"]
        )

    wait_for(delivered, 60, "the degraded alert to be delivered")

    sign_in(page, usher, viewer, f"/integrations/{linked.id}")
    expect(page.locator("#health")).to_have_text("degraded")
    expect(page.locator("#health-detail")).to_contain_text(
        "step 'Open the invite form' of create_user matched only through its fallback since"
    )
    row = page.locator("#fallbacks tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Open the invite form")
    expect(row.locator("td.error")).to_have_text(INVITE)
    expect(row).to_contain_text(ADD)
    expect(row.get_by_role("link", name=job_id[:8])).to_have_attribute("href", f"/jobs/{job_id}")
    shot = row.get_by_role("img", name="screenshot of Open the invite form")
    expect(shot).to_be_visible()
    assert page.evaluate("img => img.naturalWidth", shot.element_handle()) > 0
    alert = page.locator('#alerts tr[data-event="integration.degraded"]')
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("delivered")
    expect(alert).to_contain_text("HTTP 204")
    expect(alert.locator("td").nth(3)).to_have_text("1")
    expect(page.locator("#alerts")).to_contain_text(url)
    shoot(page, "integration-degraded")

    row.get_by_role("link", name=job_id[:8]).click()
    expect(page.locator("#job-degraded")).to_have_text("degraded")
    made = page.locator('article.action[data-action="create_user"]')
    expect(made.locator("h3")).to_contain_text("degraded")
    step = made.locator("li.step", has_text="Open the invite form")
    expect(step.locator(".fallback")).to_contain_text(f"{INVITE} found nothing")
    expect(step.locator(".locator")).to_contain_text(ADD)
    expect(page.locator('article.action[data-action="login"] h3')).not_to_contain_text("degraded")
    shoot(page, "job-degraded")
