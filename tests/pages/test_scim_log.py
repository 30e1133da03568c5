"""The SCIM log: each request the IdP made, its status, its identity and the job it queued."""

import httpx
from playwright.sync_api import Page, expect

from engine.constants import JOB_ID_HEADER
from fixtures.acme.server import AcmeServer
from tests.harness import Usher
from tests.operators import Account
from tests.pages.conftest import link_acme, post_user, shoot, sign_in


def test_an_admin_finds_the_job_of_a_scim_request_from_the_scim_log(
    usher: Usher, page: Page, viewer: Account, acme: AcmeServer
) -> None:
    """Okta says "pushed": the log shows the POST, its 201 and a link to its job."""
    linked = link_acme(usher, acme, secrets=False)
    created = post_user(linked, "lou.log@example.com")
    job_id = created.headers[JOB_ID_HEADER]
    refused = httpx.get(
        f"{linked.scim_url}/Users", headers={"Authorization": "Bearer wrong"}, timeout=30
    )
    assert refused.status_code == 401

    sign_in(page, usher, viewer, f"/integrations/{linked.id}/scim-log")
    lines = page.locator("table.scim-log tbody tr")
    expect(lines).to_have_count(2)
    expect(lines.nth(0)).to_contain_text("GET")
    expect(lines.nth(0)).to_contain_text("401")
    expect(lines.nth(1)).to_contain_text("POST")
    expect(lines.nth(1)).to_contain_text("/Users")
    expect(lines.nth(1)).to_contain_text("201")
    expect(lines.nth(1)).to_contain_text("lou.log@example.com")
    assert "placeholder-okta-sends" not in page.content()
    shoot(page, "scim-log")
    lines.nth(1).get_by_role("link", name=job_id[:8]).click()
    expect(page).to_have_url(f"{usher.api}/jobs/{job_id}")
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
