"""The flow language on a page built for it: frames, overlays, dropdowns, uploads, dialogs."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from engine.automation.browser import BrowserPool
from engine.automation.errors import FlowFailed
from engine.automation.language import Flow
from engine.automation.runner import FlowOutcome, FlowRunner, RunContext
from engine.automation.totp import RedisTotpLedger
from fixtures.server import ThreadedServer
from tests.harness import RecordingSink

FILES = Path(__file__).parent / "files"

PAGES = {
    "/frame": "<h1>Outer</h1><iframe id=editor src=/inner></iframe>",
    "/inner": "<label for=i>Inner</label><input id=i>",
    "/overlay": """<button onclick="document.body.dataset.saved='yes';
        document.getElementById('out').textContent='saved'">Save</button><p id=out></p>
        <div id=banner style="position:fixed;inset:0;background:#eee">We use cookies
        <button onclick="this.parentElement.remove()">Accept cookies</button></div>""",
    "/dropdown": """<div role=combobox aria-label=Plan tabindex=0
        onclick="document.getElementById('list').hidden=false">Choose</div>
        <ul id=list role=listbox hidden>
        <li role=option onclick="pick(this)">Free</li>
        <li role=option onclick="pick(this)">Pro</li>
        </ul><p data-testid=plan></p>
        <script>function pick(li){document.querySelector('[data-testid=plan]').textContent=
        li.textContent; document.getElementById('list').hidden=true}</script>""",
    "/upload": """<label for=f>Attachment</label><input id=f type=file
        onchange="document.getElementById('name').textContent=this.files[0].name">
        <p id=name data-testid=file-name></p>""",
    "/dialog": """<button onclick="document.getElementById('r').textContent=
        confirm('Delete it?') ? 'deleted' : 'kept'">Delete</button>
        <p id=r data-testid=result></p>""",
    "/rows": """<table><tr class=row><td>u1</td><td>a@x</td></tr>
        <tr class=row><td>u2</td><td>b@x</td></tr></table>""",
}


def page(path: str) -> Any:
    """Return a handler serving one test page."""

    async def serve(_: Any) -> HTMLResponse:
        return HTMLResponse(f"<!doctype html><title>t</title>{PAGES[path]}")

    return serve


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the test pages."""
    app = Starlette(routes=[Route(path, page(path)) for path in PAGES])
    with ThreadedServer(app) as server:
        yield server


async def run(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, steps: list[dict]
) -> tuple[FlowOutcome, RecordingSink, FlowRunner]:
    """Run inline steps against the test site and return the outcome and recorded steps."""
    context = RunContext(
        base_url=site.url,
        secrets={},
        variables={"integration": {"base_url": site.url}, "user": {"email": "a@x"}},
        ledger=RedisTotpLedger(Redis.from_url(redis_url)),
        totp_account="language",
        step_timeout_ms=2000,
        files_dir=FILES,
    )
    recorded = RecordingSink()
    async with browsers.context() as browser_context:
        runner = FlowRunner(await browser_context.new_page(), context)
        await runner.guard_navigation()
        outcome = await runner.run(Flow.model_validate({"action": "t", "steps": steps}), recorded)
        return outcome, recorded, runner


def goto(path: str) -> dict:
    """Return a goto step on the test site."""
    return {"goto": "{{ integration.base_url }}" + path}


async def test_frames_overlays_fallbacks(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A field inside an iframe; a banner cleared by a handler; the fallback that matched."""
    outcome, steps, _ = await run(
        browsers,
        site,
        redis_url,
        [
            goto("/frame"),
            {"fill": {"label": "Inner"}, "value": "{{ user.email }}", "frame": "#editor"},
            {"expect": {"label": "Inner"}, "value": "a@x", "frame": "#editor"},
            goto("/overlay"),
            {
                "dismiss_overlay": {"text": "We use cookies"},
                "close": {"role": "button", "name": "Accept cookies"},
            },
            {
                "name": "Save",
                "click": {"role": "button", "name": "Store"},
                "fallbacks": [{"role": "button", "name": "Save"}],
            },
            {"expect": {"css": "#out"}, "text": "saved"},
        ],
    )
    assert not outcome.already
    save = next(s for s in steps.results if s.name == "Save")
    assert save.locator == "role='button', name='Save'"
    assert all(s.status == "ok" for s in steps.results)


async def test_dropdowns_uploads_dialogs_and_rows(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A custom dropdown, a file upload, a dismissed confirm and rows read into a variable."""
    outcome, steps, _ = await run(
        browsers,
        site,
        redis_url,
        [
            goto("/dropdown"),
            {"select": {"role": "combobox", "name": "Plan"}, "value": "Pro"},
            {"expect": {"test_id": "plan"}, "text": "Pro"},
            goto("/upload"),
            {"upload": {"label": "Attachment"}, "files": ["note.txt"]},
            {"expect": {"test_id": "file-name"}, "text": "note.txt"},
            goto("/dialog"),
            {"dialog": "dismiss"},
            {"click": {"role": "button", "name": "Delete"}},
            {"expect": {"test_id": "result"}, "text": "kept"},
            {"wait_for": {"load_state": "networkidle"}},
            goto("/rows"),
            {
                "extract_rows": {"css": "tr.row"},
                "columns": {"key": {"css": "td:nth-child(1)"}, "email": {"css": "td:nth-child(2)"}},
                "into": "users",
            },
        ],
    )
    assert outcome.rows["users"] == [{"key": "u1", "email": "a@x"}, {"key": "u2", "email": "b@x"}]
    assert all(s.status == "ok" for s in steps.results)


async def test_uploads_stay_inside_the_app_folder(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A path that climbs out of the app's folder is refused, naming the file."""
    with pytest.raises(FlowFailed, match="'passwd' is not a file in the app's folder"):
        await run(
            browsers,
            site,
            redis_url,
            [
                goto("/upload"),
                {"upload": {"label": "Attachment"}, "files": ["../../../etc/passwd"]},
            ],
        )


async def test_a_failed_step_names_step_locator_and_url(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A locator that matches nothing: the error says which step, which locator, which URL."""
    with pytest.raises(FlowFailed) as failure:
        await run(
            browsers,
            site,
            redis_url,
            [goto("/frame"), {"name": "Open settings", "click": {"text": "Settings"}}],
        )
    message = str(failure.value)
    assert message.startswith("step 2 'Open settings' (text='Settings') failed at")
    assert f"{site.url}/frame" in message and "within 2000 ms" in message
