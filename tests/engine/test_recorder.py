"""The recorder: a codegen recording becomes a flow that checks, and never holds a secret."""

from pathlib import Path

import pytest
import yaml

from engine.apps.template import AppTemplate, load_app
from engine.automation.check import check_flow
from engine.automation.recorder import (
    Imported,
    RecordingError,
    import_recording,
    parse_samples,
)
from tests.harness import ROOT

RECORDINGS = ROOT / "fixtures" / "recordings"
SECRETS = {
    "admin_username": "recorder-admin",
    "admin_password": "Recorded-Passw0rd",
    "totp_seed": "JBSWY3DPEHPK3PXP",
}
"""What the author typed to sign in while recording, as the integration stores it."""
CREATE_SAMPLES = ["email=jane.recorded@example.com", "first_name=Jane", "last_name=Recorded"]
HEADER = """import asyncio
import re
from playwright.async_api import Playwright, async_playwright, expect


async def run(playwright: Playwright) -> None:
    browser = await playwright.chromium.launch(headless=False)
    context = await browser.new_context()
    page = await context.new_page()
"""


@pytest.fixture(scope="module")
def acme() -> AppTemplate:
    """Return Acme's template, as the import checks against it."""
    return load_app(None, "acme")


def imported(
    acme: AppTemplate, source: str, action: str, samples: list[str], **secrets: str
) -> Imported:
    """Import a recording for Acme with the given samples and secrets."""
    return import_recording(
        source,
        template=acme,
        action=action,
        samples=parse_samples(samples),
        secrets=secrets or SECRETS,
    )


def recorded(*lines: str) -> str:
    """Return an async codegen recording of these statements."""
    return HEADER + "".join(f"    {line}\n" for line in lines)


def test_a_create_recording_becomes_the_steps_after_sign_in(acme: AppTemplate) -> None:
    """Sign-in is dropped, focusing clicks go, samples become variables."""
    source = (RECORDINGS / "acme_create_user.py").read_text()
    result = imported(acme, source, "create_user", CREATE_SAMPLES)
    steps = yaml.safe_load(result.yaml)["steps"]
    assert result.dropped == 9
    assert steps[0] == {
        "name": "Click the Invite user link",
        "click": {"role": "link", "name": "Invite user"},
    }
    fills = {s["fill"]["label"]: s["value"] for s in steps if "fill" in s}
    assert fills == {
        "Email": "{{ user.email }}",
        "First name": "{{ user.first_name }}",
        "Last name": "{{ user.last_name }}",
    }
    assert steps[-1] == {
        "name": "The user email shown",
        "expect": {"test_id": "user-email"},
        "text": "{{ user.email }}",
    }
    assert "recorder-admin" not in result.yaml and "Passw0rd" not in result.yaml
    assert any("acts without looking first" in note for note in result.notes)


def test_a_login_recording_names_its_secrets_and_reads_the_code(acme: AppTemplate) -> None:
    """For login itself, typed credentials become secret references and the code a totp step."""
    source = (RECORDINGS / "acme_create_user.py").read_text()
    result = imported(acme, source.split("Invite user")[0] + '").click()\n', "login", [])
    steps = yaml.safe_load(result.yaml)["steps"]
    assert steps[0]["goto"] == "{{ integration.base_url }}/login"
    assert steps[1] == {
        "name": "Type the admin username",
        "fill": {"label": "Username"},
        "value": "{{ secrets.admin_username }}",
    }
    assert steps[2]["value"] == "{{ secrets.admin_password }}"
    totp = next(s for s in steps if "totp" in s)
    assert totp == {
        "name": "Type the authentication code",
        "totp": {"label": "Authentication code"},
        "secret": "totp_seed",
    }
    assert "492039" not in result.yaml


def test_a_sync_recording_templates_urls_texts_and_patterns(acme: AppTemplate) -> None:
    """The account's key in a URL, a text and a URL pattern becomes account.key."""
    source = (RECORDINGS / "acme_update_user.py").read_text()
    samples = ["account.key=u000007", "last_name=Renamed", "costCenter=CC-42"]
    steps = yaml.safe_load(imported(acme, source, "update_user", samples).yaml)["steps"]
    assert steps[0] == {
        "name": "Open /users/{{ account.key }}",
        "goto": "{{ integration.base_url }}/users/{{ account.key }}",
    }
    assert steps[1]["text"] == "{{ account.key }}"
    assert steps[3]["value"] == "{{ user.costCenter }}"
    assert steps[-1]["expect"] == {"url": "/users/{{ account.key }}(\\?|$)"}


def test_every_imported_flow_passes_flows_check(acme: AppTemplate, tmp_path: Path) -> None:
    """What the import writes is a flow `flows check` accepts, ready to edit."""
    cases = [
        ("acme_create_user.py", "create_user", CREATE_SAMPLES),
        ("acme_update_user.py", "update_user", ["account.key=u000007", "last_name=Renamed"]),
    ]
    for name, action, samples in cases:
        result = imported(acme, (RECORDINGS / name).read_text(), action, samples)
        path = tmp_path / f"{action}.yaml"
        path.write_text(result.yaml)
        assert [str(p) for p in check_flow(path, acme) if p.severity == "error"] == []


def test_a_secret_anywhere_but_its_fill_refuses_the_import(acme: AppTemplate) -> None:
    """A URL or an expected text holding a secret's value is never written."""
    source = recorded(
        'await page.goto("http://127.0.0.1:8123/users?token=Recorded-Passw0rd")',
        'await page.get_by_role("button", name="Save").click()',
    )
    with pytest.raises(RecordingError, match="secret 'admin_password'"):
        imported(acme, source, "update_user", [])
    texted = recorded(
        'await page.goto("http://127.0.0.1:8123/users")',
        'await expect(page.get_by_test_id("who")).to_have_text("recorder-admin")',
    )
    with pytest.raises(RecordingError, match="secret 'admin_username'"):
        imported(acme, texted, "update_user", [])


def test_a_password_that_is_no_stored_secret_is_refused(acme: AppTemplate) -> None:
    """Without the integration's secrets, a typed password cannot be named: refuse it."""
    source = recorded('await page.get_by_label("Password").fill("hunter2hunter2")')
    with pytest.raises(RecordingError, match="password is typed into Password"):
        import_recording(source, template=acme, action="login", samples={}, secrets={})


def test_brittle_css_is_kept_and_flagged(acme: AppTemplate) -> None:
    """A positional or generated CSS locator is written with a review note above it."""
    source = recorded(
        'await page.goto("http://127.0.0.1:8123/users")',
        'await page.locator("div:nth-child(3) > .css-1x2y3z").click()',
        'await page.get_by_role("row", name="jane").get_by_role("link").click()',
    )
    result = imported(acme, source, "update_user", [])
    assert "  # review: brittle CSS 'div:nth-child(3) > .css-1x2y3z'" in result.yaml
    assert "narrows the jane row" in result.yaml
    steps = yaml.safe_load(result.yaml)["steps"]
    assert steps[1]["click"] == {"css": "div:nth-child(3) > .css-1x2y3z"}


def test_what_a_flow_cannot_do_is_refused_with_its_line(acme: AppTemplate) -> None:
    """A popup, an unknown call or bad Python is a clear error, not a broken flow."""
    popup = HEADER + (
        "    async with page.expect_popup() as page1_info:\n"
        '        await page.get_by_role("link", name="Help").click()\n'
    )
    with pytest.raises(RecordingError, match="line 10: the recording waits for a popup"):
        imported(acme, popup, "update_user", [])
    hover = recorded('await page.get_by_role("link", name="Help").hover()')
    with pytest.raises(RecordingError, match=r"no step for \.hover\(\)"):
        imported(acme, hover, "update_user", [])
    with pytest.raises(RecordingError, match="not a Python recording: line 1"):
        imported(acme, "def run(:\n", "update_user", [])
    with pytest.raises(RecordingError, match="declares no action 'launch'"):
        imported(acme, hover, "launch", [])


def test_samples_are_named_variables() -> None:
    """A bare name is a user attribute; a dotted one names its namespace; a typo is refused."""
    assert parse_samples(["email=a@b.c", "account.key=7"]) == {
        "user.email": "a@b.c",
        "account.key": "7",
    }
    with pytest.raises(RecordingError, match="name=value"):
        parse_samples(["email"])
    with pytest.raises(RecordingError, match=r"user\.\*, account\.\* or entitlement\.\*"):
        parse_samples(["secrets.admin_password=x"])


def test_a_sample_matches_whole_values_only(acme: AppTemplate) -> None:
    """The key 7 is templated in /users/7, never inside /users/17 or a port number."""
    source = recorded(
        'await page.goto("http://127.0.0.1:8123/users/7")',
        'await page.goto("http://127.0.0.1:8123/users/17")',
    )
    steps = yaml.safe_load(imported(acme, source, "update_user", ["account.key=7"]).yaml)["steps"]
    assert [s["goto"] for s in steps] == [
        "{{ integration.base_url }}/users/{{ account.key }}",
        "{{ integration.base_url }}/users/17",
    ]
