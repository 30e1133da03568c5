"""Pages in headless Chromium against the session's real `usher serve`."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserType, Page, Playwright, sync_playwright

from engine.automation.browser import find_chromium
from engine.settings import Settings
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.harness import ROOT, Usher, wait_for
from tests.operators import Account, admin, signed_in_client, usher_cli, viewer

__all__ = ["admin", "signed_in_client", "viewer"]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "pages"
VIEWPORT = {"width": 1280, "height": 800}
EAGER_IMAGES = """Promise.all([...document.images].map(img => {
  img.loading = "eager";
  return img.complete ? null : new Promise(done => { img.onload = img.onerror = done; });
}))"""
"""Load every thumbnail below the fold, so that a full-page artefact shows them all."""


@pytest.fixture
def playwright() -> Iterator[Playwright]:
    """Run Playwright's sync API for one test only.

    It keeps an event loop running on the main thread while it lives; the async fixtures
    of the session (set up and torn down between tests) need that thread's loop free.
    """
    with sync_playwright() as started:
        yield started


@pytest.fixture
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    """Return the browser type the pages are tested in (Chromium by default)."""
    return getattr(playwright, browser_name)


@pytest.fixture
def browser_type_launch_args(
    browser_type_launch_args: dict[str, Any], playwright: Playwright
) -> dict[str, Any]:
    """Launch Playwright's own Chromium, else the system's, as Usher's workers do."""
    path = find_chromium(Settings(), playwright)
    return {**browser_type_launch_args, **({"executable_path": str(path)} if path else {})}


@pytest.fixture(scope="session")
def browser_context_args() -> dict[str, Any]:
    """Open each test's context at a fixed, laptop-sized viewport, for comparable artefacts."""
    return {"viewport": VIEWPORT}


@pytest.fixture
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> Callable[..., Browser]:
    """Return how to launch the test's browser, headless unless pytest is told otherwise."""
    return lambda **kwargs: browser_type.launch(**{**browser_type_launch_args, **kwargs})


@pytest.fixture
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    """Launch the test's browser; it closes with the test, before any async fixture runs."""
    launched = launch_browser()
    yield launched
    launched.close()


def sign_in(page: Page, usher: Usher, account: Account, then: str = "/activity") -> None:
    """Sign in through the sign-in page and land where `then` says."""
    page.goto(f"{usher.api}{then}")
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{usher.api}{then}")


def shoot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot of the page (all of it unless told) as the test's artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate(EAGER_IMAGES)
    page.wait_for_load_state("networkidle")
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@dataclass(frozen=True)
class Linked:
    """An Acme integration made with the real CLI, its SCIM URL and token."""

    id: str
    scim_url: str
    token: str


def link_acme(usher: Usher, acme: AcmeServer, *, secrets: bool = True) -> Linked:
    """Create an Acme integration with `usher integrations create`, and its secrets if asked.

    `--skip-import`: the pages' tests read jobs they start themselves, not an import's (the
    import and its waiting jobs are proven in tests/e2e/test_drift.py).
    """
    made = usher_cli(
        usher,
        "integrations",
        "create",
        "--app",
        "acme",
        "--base-url",
        acme.url,
        "--json",
        "--skip-import",
    )
    assert made.exit_code == 0, made.output
    fields = json.loads(made.output)
    linked = Linked(fields["id"], f"{usher.api}/scim/v2/{fields['id']}", fields["token"])
    if secrets:
        set_all_secrets(usher, acme, linked)
    return linked


def set_all_secrets(usher: Usher, acme: AcmeServer, linked: Linked) -> None:
    """Store the service account's secrets with `usher integrations set-secret`."""
    for name, value in acme.state.service_account().items():
        done = usher_cli(usher, "integrations", "set-secret", linked.id, name, stdin=value)
        assert done.exit_code == 0, done.output


def post_user(linked: Linked, email: str) -> httpx.Response:
    """Create a user as Okta does, with room for a loaded machine's slower answer."""
    return httpx.post(
        f"{linked.scim_url}/Users",
        json=okta_user(email, "Paula", "Page"),
        headers={"Authorization": f"Bearer {linked.token}"},
        timeout=30,
    )


@pytest.fixture(scope="session")
def admin_token(usher: Usher) -> str:
    """Return an admin operator API token made with `usher tokens create`."""
    made = usher_cli(usher, "tokens", "create", "--name", "pages")
    assert made.exit_code == 0, made.output
    return made.output.strip()


def wait_state(
    usher: Usher, token: str, job_id: str, states: set[str], timeout_s: float = 90
) -> dict:
    """Poll the operator API until the job is in one of `states`; return it."""
    seen: dict = {}

    def reached() -> bool:
        nonlocal seen
        answer = httpx.get(
            f"{usher.api}/api/jobs/{job_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        seen = answer.json()
        return seen.get("status") in states

    wait_for(reached, timeout_s, f"job {job_id} to be one of {sorted(states)}")
    return seen
