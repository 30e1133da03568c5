"""Pages in headless Chromium against the session's real `usher serve`."""

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Playwright

from engine.automation.browser import find_chromium
from engine.settings import Settings
from tests.harness import ROOT, Usher
from tests.operators import Account, admin, signed_in_client, viewer

__all__ = ["admin", "signed_in_client", "viewer"]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "pages"


@pytest.fixture(scope="session")
def browser_type_launch_args(
    browser_type_launch_args: dict[str, Any], playwright: Playwright
) -> dict[str, Any]:
    """Launch Playwright's own Chromium, else the system's, as Usher's workers do."""
    path = find_chromium(Settings(), playwright)
    return {**browser_type_launch_args, **({"executable_path": str(path)} if path else {})}


def sign_in(page: Page, usher: Usher, account: Account, then: str = "/activity") -> None:
    """Sign in through the sign-in page and land where `then` says."""
    page.goto(f"{usher.api}{then}")
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{usher.api}{then}")


def shoot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as the test's artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
