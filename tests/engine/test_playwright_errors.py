"""Every Playwright error is a failed step with its locator, the page's URL and a screenshot."""

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page
from typer.testing import CliRunner

from cli.main import app
from engine.apps.integrations import create_integration, set_secrets
from engine.automation.browser import BrowserPool
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import Ran, goto, html, run_flow, serve
from tests.harness import ROOT

PAGES = {
    "/twins": html("<p class=hit>Saved</p><p class=hit>Saved</p><button>Go</button>"),
    "/busy": html("<p id=busy>Working</p>"),
    "/vanish": html("<button onmouseover='this.remove()'>Go</button>"),
    "/closing": html("<p>Here</p>"),
    "/already": html("<p>Done</p>"),
}


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the pages that make Playwright fail."""
    with serve(PAGES) as server:
        yield server


def failed_step(ran: Ran) -> tuple[str, str]:
    """Return the failed step's error and the failure's message; check it was recorded."""
    assert ran.failure is not None, "the flow should have failed"
    failed = [r for r in ran.sink.results if r.status == "failed"]
    assert len(failed) == 1, [(r.name, r.status) for r in ran.sink.results]
    assert failed[0].error == str(ran.failure)
    return failed[0].error or "", str(ran.failure)


async def test_a_strict_mode_violation_in_wait_for_is_a_failed_step(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A wait_for whose locator matches two elements: a failed step, not an AssertionError."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/twins"), {"name": "Wait for the note", "wait_for": {"css": "p.hit"}}],
    )
    error, _ = failed_step(ran)
    assert error.startswith("step 2 'Wait for the note' (css='p.hit') failed at")
    assert f"{site.url}/twins" in error
    assert "matched 2 elements where one was needed (strict mode)" in error
    assert ran.sink.screenshot_of("Wait for the note").startswith(b"\x89PNG")
    assert not ran.failure.transient  # type: ignore[union-attr]


async def test_a_strict_mode_violation_in_expect_and_click(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """An expect on text and a click, each matching two elements, fail as steps."""
    expecting = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/twins"), {"name": "Saved shows", "expect": {"text": "Saved"}, "text": "Saved"}],
    )
    error, _ = failed_step(expecting)
    assert "(text='Saved')" in error and "strict mode" in error
    clicking = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/twins"), {"name": "Click a note", "click": {"css": "p"}}],
    )
    error, _ = failed_step(clicking)
    assert "(css='p')" in error and "matched 2 elements" in error
    assert clicking.sink.screenshot_of("Click a note")


async def test_a_timeout_is_a_failed_step(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Waiting for an element to go that stays: the timeout names the step and URL."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/busy"),
            {
                "name": "Wait until done",
                "wait_for": {"css": "#busy"},
                "state": "hidden",
                "timeout_ms": 300,
            },
        ],
    )
    error, _ = failed_step(ran)
    assert "'Wait until done' (css='#busy')" in error and "Timeout 300ms exceeded" in error
    assert ran.sink.screenshot_of("Wait until done")


async def test_an_element_detached_while_acting_is_a_failed_step(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A button the page removes as the pointer reaches it: the error says it was detached."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/vanish"), {"name": "Go", "click": {"role": "button", "name": "Go"}}],
    )
    error, _ = failed_step(ran)
    assert "role='button', name='Go'" in error and "the element was detached" in error
    assert ran.sink.screenshot_of("Go")


async def test_a_closed_page_is_a_failed_transient_step(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The page closes under a waiting step: it fails, transient, recorded without a picture."""

    async def close_soon(page: Page) -> None:
        asyncio.get_running_loop().call_later(0.5, lambda: asyncio.ensure_future(page.close()))

    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/closing"),
            {"name": "Wait for more", "wait_for": {"text": "More"}, "state": "visible"},
        ],
        prepare=close_soon,
    )
    error, _ = failed_step(ran)
    assert "'Wait for more' (text='More')" in error and "the page closed" in error
    assert ran.failure is not None and ran.failure.transient
    assert ran.sink.artifacts[-1] == [] or ran.sink.artifacts[-1][0].kind != "screenshot"


async def test_already_is_its_own_outcome(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """An `already` step is recorded as `already`, never `skipped`; the flow succeeds."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/already"),
            {
                "name": "Done already?",
                "if_visible": {"text": "Done"},
                "then": [{"name": "It is done", "already": "done before"}],
            },
            {"name": "Never runs", "click": {"text": "Nothing"}},
        ],
    )
    assert ran.outcome is not None and ran.outcome.already
    statuses = [(r.name, r.status) for r in ran.sink.results]
    assert statuses[-2:] == [("Done already?", "ok"), ("It is done", "already")]


@pytest.fixture
async def broken_listing(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """Connect a fresh Acme whose list_users waits on a locator matching every row."""
    flows_dir = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows_dir)
    listing = flows_dir / "acme" / "list_users.yaml"
    listing.write_text(
        "version: 1\naction: list_users\nsteps:\n"
        '  - {name: Open the users, goto: "{{ integration.base_url }}/users"}\n'
        "  - {name: Wait for a row, wait_for: {test_id: user-row}}\n"
    )
    settings = Settings(data_dir=tmp_path / "data", flows_dir=flows_dir, redis_url=redis_url)
    settings.ensure_data_dir()
    for name, value in {
        "USHER_DATA_DIR": str(settings.data_dir),
        "USHER_FLOWS_DIR": str(flows_dir),
        "USHER_REDIS_URL": redis_url,
        "USHER_ISOLATED_DNS": "true",
        "USHER_STEP_TIMEOUT_MS": "2000",
    }.items():
        monkeypatch.setenv(name, value)
    with AcmeServer(AcmeState()) as acme:
        db = Database.from_settings(settings)
        await db.migrate()
        async with db.session() as session:
            integration, _ = await create_integration(
                session, settings, app="acme", base_url=acme.url
            )
            vault = Vault.from_path(settings.vault_key_path)
            await set_secrets(
                session, settings, vault, integration.id, acme.state.service_account()
            )
        await db.dispose()
        yield integration.id


def test_replay_prints_the_failed_step_never_a_traceback(broken_listing: str) -> None:
    """`usher flows replay` shows the strict-mode step failed, with its screenshot; exit 1."""
    runner = CliRunner()
    result = runner.invoke(
        app, ["flows", "replay", "acme", "list_users", "--integration", broken_listing]
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    line = next(x for x in result.stdout.splitlines() if "Wait for a row" in x)
    assert "failed" in line and "[test_id='user-row']" in line and line.endswith(".png")
    assert "matched 3 elements where one was needed (strict mode)" in result.stdout
    assert "'Wait for a row' (test_id='user-row') failed at" in result.stderr


def test_replay_prints_already_as_its_own_outcome(broken_listing: str, tmp_path: Path) -> None:
    """A replay that finds its state already so prints the step as `already`, not skipped."""
    (tmp_path / "flows" / "acme" / "list_users.yaml").write_text(
        "version: 1\naction: list_users\nsteps:\n"
        '  - {name: Open the users, goto: "{{ integration.base_url }}/users"}\n'
        "  - name: Listed before?\n"
        "    if_visible: {role: heading, name: Users}\n"
        "    then: [{name: Listed before, already: nothing new}]\n"
    )
    result = CliRunner().invoke(
        app, ["flows", "replay", "acme", "list_users", "--integration", broken_listing]
    )
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if "Listed before " in x)
    assert " already " in line and "skipped" not in result.stdout
    assert "list_users already so" in result.stdout


def test_flows_help_lists_only_commands_that_exist() -> None:
    """`usher flows --help` names each command the docs promise, and each one answers."""
    result = CliRunner().invoke(app, ["flows", "--help"])
    assert result.exit_code == 0
    for command in ("check", "replay", "schema", "drift", "import", "record"):
        assert f"│ {command} " in result.stdout, command
        helped = CliRunner().invoke(app, ["flows", command, "--help"])
        assert helped.exit_code == 0 and "Usage:" in helped.stdout, command
