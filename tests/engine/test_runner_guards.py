"""Secrets are typed only on the integration's own origin; other hosts are not visited."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from engine.automation.browser import BrowserPool
from engine.automation.errors import FlowFailed
from engine.automation.guard import off_origin
from engine.automation.language import load_flow
from engine.automation.runner import FlowRunner, RunContext
from engine.automation.totp import RedisTotpLedger
from fixtures.redirector import create_redirector
from fixtures.server import ThreadedServer
from tests.harness import ROOT, RecordingSink

LOGIN_FLOW = ROOT / "flows" / "acme" / "login.yaml"
PASSWORD = "hunter2-but-longer"
PAGE = """<!doctype html><form method=post><label for=u>Username</label><input id=u name=u>
<label for=p>Password</label><input id=p name=p type=password><button>Sign in</button></form>"""


class Recorder:
    """A look-alike sign-in page on another origin that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self.serve, methods=["GET", "POST"])])

    async def serve(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, await request.body()))
        return HTMLResponse(PAGE)


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, ThreadedServer]]:
    """Serve the look-alike page."""
    recorder = Recorder()
    with ThreadedServer(recorder.app) as server:
        yield recorder, server


async def run_login(
    browsers: BrowserPool, base_url: str, redis_url: str, allowed_hosts: list[str]
) -> tuple[RecordingSink, FlowFailed]:
    """Run Acme's login flow against base_url and return the failure it must end in."""
    context = RunContext(
        base_url=base_url,
        secrets={"admin_username": "usher-bot", "admin_password": PASSWORD, "totp_seed": "A" * 32},
        variables={"integration": {"id": "guard", "base_url": base_url}},
        ledger=RedisTotpLedger(Redis.from_url(redis_url)),
        totp_account="guard-test",
        allowed_hosts=allowed_hosts,
        step_timeout_ms=3000,
    )
    steps = RecordingSink()
    async with browsers.context() as browser_context:
        runner = FlowRunner(await browser_context.new_page(), context)
        await runner.guard_navigation()
        with pytest.raises(FlowFailed) as failure:
            await runner.run(load_flow(Path(LOGIN_FLOW)), steps)
    return steps, failure.value


async def test_a_redirect_to_another_origin_is_not_followed(
    browsers: BrowserPool, recorder: tuple[Recorder, ThreadedServer], redis_url: str
) -> None:
    """The app redirects its sign-in page away: the flow stops there and types nothing."""
    record, target = recorder
    with ThreadedServer(create_redirector(target.url)) as hostile:
        steps, failure = await run_login(browsers, hostile.url, redis_url, allowed_hosts=[])
    assert "'Open the sign-in page'" in str(failure)
    assert f"sent the browser to {target.url}/login, off its origin" in str(failure)
    assert [method for method, _, _ in record.requests] == ["GET"]
    assert PASSWORD not in str(failure)
    assert [s.status for s in steps.results] == ["failed"]


async def test_a_secret_is_never_typed_on_an_allowed_foreign_origin(
    browsers: BrowserPool, recorder: tuple[Recorder, ThreadedServer], redis_url: str
) -> None:
    """Even where a redirect may land, the password field there stays empty."""
    record, target = recorder
    with ThreadedServer(create_redirector(target.url)) as hostile:
        _, failure = await run_login(browsers, hostile.url, redis_url, allowed_hosts=["127.0.0.1"])
    assert f"refused to type a secret on {target.url}" in str(failure)
    assert "'Type the username'" in str(failure)
    assert [method for method, _, _ in record.requests] == ["GET"]
    assert all(PASSWORD.encode() not in body for _, _, body in record.requests)


async def test_a_link_to_another_origin_is_not_followed(
    browsers: BrowserPool,
    recorder: tuple[Recorder, ThreadedServer],
    redis_url: str,
    tmp_path: Path,
) -> None:
    """A click on a link off the origin is blocked in the browser: the foreign host sees no
    request and the page never shows it."""
    record, target = recorder
    link = HTMLResponse(f'<!doctype html><a href="{target.url}/elsewhere">Away</a>')
    origin_app = Starlette(routes=[Route("/", lambda _: link)])
    flow = tmp_path / "visit.yaml"
    flow.write_text(
        "version: 1\naction: list_users\nsteps:\n"
        "  - {name: Open the home page, goto: '{{ integration.base_url }}/'}\n"
        "  - {name: Follow the link, click: {role: link, name: Away}}\n"
    )
    steps = RecordingSink()
    with ThreadedServer(origin_app) as origin:
        context = RunContext(
            base_url=origin.url,
            secrets={},
            variables={"integration": {"id": "guard", "base_url": origin.url}},
            ledger=RedisTotpLedger(Redis.from_url(redis_url)),
            totp_account="guard-test",
            allowed_hosts=[],
            step_timeout_ms=3000,
        )
        async with browsers.context() as browser_context:
            runner = FlowRunner(await browser_context.new_page(), context)
            await runner.guard_navigation()
            with contextlib.suppress(FlowFailed):
                await runner.run(load_flow(flow), steps)
    assert record.requests == []
    assert [s.url.startswith(target.url) for s in steps.results] == [False, False]


@pytest.mark.parametrize(
    ("url", "routed"),
    [
        ("http://127.0.0.1:8080/users?q=a", False),
        ("http://127.0.0.1:8080", False),
        ("HTTP://127.0.0.1:8080/", False),
        ("http://127.0.0.1:8080#top", False),
        ("http://127.0.0.1:80801/users", True),
        ("http://127.0.0.1:8080.evil.test/", True),
        ("https://127.0.0.1:8080/", True),
        ("http://127.0.0.2:8080/", True),
        ("data:text/html,hi", True),
    ],
)
def test_only_requests_off_the_origin_are_routed(url: str, routed: bool) -> None:
    """The guard's route pattern leaves the origin's own requests alone and takes the rest."""
    assert bool(off_origin("http://127.0.0.1:8080").search(url)) is routed
