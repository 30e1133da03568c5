"""One way to start a flow run, for jobs, replay and the bench alike.

A run is a RunContext (what flows read, the secrets and their guards) and a FlowRunner on
a fresh page of its own browser context with the navigation guard installed. Building it in
one place keeps the guards on every path that types into an app.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from engine.apps.template import AppTemplate
from engine.automation.browser import BrowserPool
from engine.automation.language import FRAGMENTS_DIR
from engine.automation.runner import FlowRunner, RunContext
from engine.automation.sessions import browser_state
from engine.automation.totp import TotpLedger


def build_run(
    *,
    base_url: str,
    template: AppTemplate | None,
    secrets: dict[str, str],
    variables: dict[str, Any],
    ledger: TotpLedger,
    account: str,
    step_timeout_ms: int,
    halt: Callable[[], str | None] | None = None,
) -> RunContext:
    """Return what one run's flows may read: variables, secrets, hosts, files and TOTP ledger.

    `account` keys the TOTP ledger, so two runs of one integration never reuse a code;
    `halt` is asked before every step and stops the run when it gives a reason.
    """
    return RunContext(
        base_url=base_url,
        secrets=secrets,
        variables=variables,
        ledger=ledger,
        totp_account=account,
        allowed_hosts=template.allowed_hosts if template else [],
        step_timeout_ms=step_timeout_ms,
        files_dir=template.folder if template else None,
        halt=halt,
        fragments_dir=template.folder / FRAGMENTS_DIR if template else None,
    )


@asynccontextmanager
async def open_runner(
    browsers: BrowserPool, run: RunContext, storage_state: dict[str, Any] | None = None
) -> AsyncIterator[FlowRunner]:
    """Yield a guarded runner on a new page in its own context, closed afterwards.

    The context starts with the kept state's cookies and localStorage; SignIn gives the
    page the rest (sessionStorage) before the login flow runs.
    """
    async with browsers.context(browser_state(storage_state)) as context:
        runner = FlowRunner(await context.new_page(), run)
        await runner.guard_navigation()
        yield runner
