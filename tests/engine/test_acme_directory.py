"""Acme's directory: rows behind Load more, a menu per row, read completely by list_users."""

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from engine.apps.template import load_app
from engine.automation.browser import BrowserPool
from engine.automation.language import load_flow
from engine.automation.run import build_run
from engine.automation.runner import FlowOutcome, FlowRunner
from engine.automation.totp import RedisTotpLedger
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from tests.engine.flow_pages import KeepingSink
from tests.harness import ROOT

EXTRA = 23


@pytest.fixture
def acme() -> Iterator[AcmeServer]:
    """Run an Acme with 26 accounts: three to start with and 23 more."""
    state = AcmeState()
    for n in range(EXTRA):
        state.add_user(f"Bulk{n:02d}@Example.com", "Bulk", f"User{n:02d}", active=n % 5 != 0)
    with AcmeServer(state) as server:
        yield server


async def list_users(
    browsers: BrowserPool, acme: AcmeServer, redis_url: str
) -> tuple[FlowOutcome, KeepingSink]:
    """Sign in and run Acme's shipped list_users flow."""
    template = load_app(ROOT / "flows", "acme")
    run = build_run(
        base_url=acme.url,
        template=template,
        secrets=acme.state.service_account(),
        variables={"integration": {"id": "i", "base_url": acme.url}},
        ledger=RedisTotpLedger(Redis.from_url(redis_url)),
        account=f"directory-{acme.url}",
        step_timeout_ms=4000,
    )
    sink = KeepingSink()
    async with browsers.context() as context:
        runner = FlowRunner(await context.new_page(), run)
        await runner.guard_navigation()
        await runner.run(load_flow(template.flow_path("login")), sink)
        outcome = await runner.run(load_flow(template.flow_path("list_users")), sink)
    return outcome, sink


async def test_list_users_reads_every_account_once(
    browsers: BrowserPool, acme: AcmeServer, redis_url: str
) -> None:
    """26 accounts in batches of ten: all read, none twice, ids from an attribute."""
    outcome, _ = await list_users(browsers, acme, redis_url)
    rows = outcome.rows["users"]
    assert len(rows) == len(acme.state.users) == 26
    assert {r["key"] for r in rows} == set(acme.state.users)
    bulk = next(r for r in rows if r["key"] == "u000004")
    assert bulk == {
        "key": "u000004",
        "email": "bulk00@example.com",
        "name": "Bulk User00",
        "plan": "Free",
        "roles": "",
        "status": "Deactivated",
        "page": "/users/u000004",
    }
    alice = next(r for r in rows if r["email"] == "alice@acme.test")
    assert (alice["roles"], alice["plan"]) == ("Admin", "Enterprise"), "the roles drift compares"


async def test_an_account_arriving_mid_listing_repeats_no_row(
    browsers: BrowserPool, acme: AcmeServer, redis_url: str
) -> None:
    """A sign-up after the second batch shifts the newest-first list: no row is read twice."""
    before = set(acme.state.users)
    acme.state.arrive_during_listing = [("late@example.com", "Late", "Comer")]
    outcome, _ = await list_users(browsers, acme, redis_url)
    keys = [r["key"] for r in outcome.rows["users"]]
    assert len(keys) == len(set(keys)), "a row was read twice"
    assert set(keys) >= before
    assert len(acme.state.users) == 27 and not acme.state.arrive_during_listing
