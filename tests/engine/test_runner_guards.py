"""Secrets are typed only on the integration's own origin; other hosts are not visited."""

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
