"""The app's logged-in browser state per integration: encrypted, versioned, shared.

The state is Playwright's storage_state (cookies and localStorage) plus what it leaves out:
the sessionStorage of the app's origin, where single-page apps often keep their token. It
is read from the tab the login flow ran in and given back to a new tab by an init script
before the app's first document runs, once per tab and generation.
"""

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.automation.errors import FlowFailed
from engine.automation.guard import origin_of
from engine.automation.language import Flow
from engine.automation.runner import FlowOutcome, FlowRunner, SecretAhead, StepSink
from engine.constants import LEASE_RENEWALS, LOGIN_LOCK_PREFIX, LOGIN_LOCK_S, LOGIN_WAIT_S
from engine.metrics import SignInResult, count_sign_in
from engine.storage.db import Database
from engine.storage.models import IntegrationSession, utcnow
from engine.storage.vault import Vault

SESSION_STORAGE = "session_storage"
"""The key of a kept state holding sessionStorage: [{"origin": ..., "items": {name: value}}]."""
RESTORED_MARK = "usher.kept-generation"
"""The sessionStorage item that records which kept generation a tab was given."""
READ_SESSION_STORAGE_JS = """mark => Object.fromEntries(
  Object.entries(sessionStorage).filter(([name]) => name !== mark))"""


@dataclass(frozen=True)
class StoredSession:
    """A signed-in browser state and the generation of the sign-in that made it."""

    generation: int
    state: dict[str, Any]


async def load_session(
    session: AsyncSession, vault: Vault, integration_id: str
) -> StoredSession | None:
    """Return the integration's kept sign-in, decrypted, if there is one."""
    row = await session.get(IntegrationSession, integration_id)
    if row is None:
        return None
    return StoredSession(row.generation, json.loads(vault.decrypt(row.ciphertext)))


async def save_session(
    session: AsyncSession, vault: Vault, integration_id: str, state: dict[str, Any]
) -> int:
    """Keep a new sign-in, encrypted, and return its generation."""
    row = await session.get(IntegrationSession, integration_id)
    if row is None:
        row = IntegrationSession(integration_id=integration_id, ciphertext=b"")
    row.generation += 1
    row.ciphertext = vault.encrypt(json.dumps(state))
    row.updated_at = utcnow()
    session.add(row)
    await session.commit()
    return row.generation


def browser_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the part of a kept state a new browser context restores by itself."""
    if state is None:
        return None
    return {name: value for name, value in state.items() if name != SESSION_STORAGE}


async def read_session_storage(page: Page, base_url: str) -> list[dict[str, Any]]:
    """Return the sessionStorage of the app's origin in this tab; none when it is elsewhere."""
    origin = origin_of(base_url)
    if origin_of(page.url) != origin:
        return []
    items = await page.evaluate(READ_SESSION_STORAGE_JS, RESTORED_MARK)
    return [{"origin": origin, "items": items}] if items else []


def restore_script(entries: list[dict[str, Any]], generation: int) -> str:
    """Return a script that gives a tab of the kept origin its sessionStorage, unless the
    tab already holds this generation or a newer one (so a later sign-in is never undone)."""
    return f"""(() => {{
  const entry = {json.dumps(entries)}.find(e => e.origin === location.origin);
  if (!entry) return;
  const mark = {json.dumps(RESTORED_MARK)};
  if (Number(sessionStorage.getItem(mark) || 0) >= {generation}) return;
  for (const [name, value] of Object.entries(entry.items)) sessionStorage.setItem(name, value);
  sessionStorage.setItem(mark, "{generation}");
}})()"""


async def restore_session_storage(page: Page, kept: StoredSession) -> None:
    """Give the tab the kept sessionStorage: before its next document's scripts run, and at
    once when it already shows the app (a newer session found before signing in again)."""
    entries = kept.state.get(SESSION_STORAGE) or []
    if not entries:
        return
    script = restore_script(entries, kept.generation)
    await page.context.add_init_script(script)
    await page.evaluate(script)


class SignInGate(Protocol):
    """Decide whether a sign-in may be tried, and hear how each one went (the breaker)."""

    async def before(self) -> None:
        """Raise FlowFailed when no sign-in may be tried now."""
        ...

    async def refused(self, failure: FlowFailed) -> None:
        """Count a sign-in the app turned down."""
        ...

    async def succeeded(self) -> None:
        """Note a sign-in that worked."""
        ...


class SignIn:
    """Sign a run's browser context in, sharing one kept session per integration.

    A context that starts with a kept session checks it without any lock: the login flow
    runs up to its first step that would type a secret, and a session still valid ends it
    `already`. Only a sign-in that must type credentials runs the login flow under the
    integration's Redis lock, one worker at a time: a worker that waited loads the session
    another just made, so an expired session is re-established once, not by every worker.
    """

    def __init__(
        self,
        db: Database,
        vault: Vault,
        redis: Redis,
        integration_id: str,
        kept: StoredSession | None,
        gate: SignInGate | None = None,
        reuse_kept: bool = True,
    ) -> None:
        self.db = db
        self.vault = vault
        self.redis = redis
        self.integration_id = integration_id
        self.generation = kept.generation if kept else 0
        self.unrestored = kept
        """The kept session whose sessionStorage the page has not been given yet."""
        self.gate = gate
        self.reuse_kept = reuse_kept
        self.fresh = False

    async def ensure(self, runner: FlowRunner, login: Flow, sink: StepSink) -> FlowOutcome:
        """Run the login flow with the newest kept session; keep the session it makes.

        Raises FlowFailed when the flow fails or another worker's sign-in takes too long,
        and as transient when Redis, which holds the lock, cannot be reached.
        """
        if self.reuse_kept and self.generation:
            with contextlib.suppress(SecretAhead):
                return await self._check_kept(runner, login, sink)
        lock = self.redis.lock(
            f"{LOGIN_LOCK_PREFIX}{self.integration_id}",
            timeout=LOGIN_LOCK_S,
            blocking_timeout=LOGIN_WAIT_S,
        )
        try:
            acquired = await lock.acquire()
        except (RedisError, OSError) as error:
            raise FlowFailed(f"sign-in lock unreachable: {error}", transient=True) from error
        if not acquired:
            raise FlowFailed("timed out waiting for another worker to sign in", transient=True)
        renewer = asyncio.create_task(_hold(lock))
        try:
            return await self._sign_in(runner, login, sink)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            # A lock Redis lost (restarted empty, or away now) only expires: the flow's
            # result stands either way.
            with contextlib.suppress(LockError, RedisError, OSError):
                await lock.release()

    async def _check_kept(self, runner: FlowRunner, login: Flow, sink: StepSink) -> FlowOutcome:
        """Without the lock: ask the gate, then run login on the kept session until it would
        type a secret (SecretAhead: the session is no longer valid, sign in for real)."""
        await self._ask_gate()
        await self._give_kept(runner, None)
        return await self._run_login(runner, login, sink, until_secret=True)

    async def _sign_in(self, runner: FlowRunner, login: Flow, sink: StepSink) -> FlowOutcome:
        """Under the lock: ask the gate, take a newer kept session, run login, keep what it made."""
        await self._ask_gate()
        kept = None
        if self.reuse_kept:
            async with self.db.reader() as session:
                kept = await load_session(session, self.vault, self.integration_id)
        await self._give_kept(runner, kept)
        return await self._run_login(runner, login, sink, until_secret=False)

    async def _ask_gate(self) -> None:
        """Raise FlowFailed when the gate (the breaker) lets no sign-in be tried now."""
        if self.gate is None:
            return
        try:
            await self.gate.before()
        except FlowFailed:
            count_sign_in(self.integration_id, SignInResult.paused)
            raise

    async def _give_kept(self, runner: FlowRunner, kept: StoredSession | None) -> None:
        """Give the context a newer kept session's cookies, and the page the sessionStorage
        of the session it was given last."""
        try:
            if kept is not None and kept.generation > self.generation:
                await runner.page.context.add_cookies(kept.state.get("cookies", []))
                self.generation = kept.generation
                self.unrestored = kept
            if self.unrestored is not None:
                await restore_session_storage(runner.page, self.unrestored)
                self.unrestored = None
        except PlaywrightError as error:
            raise FlowFailed(f"the browser went away: {error}", transient=True) from error

    async def _run_login(
        self, runner: FlowRunner, login: Flow, sink: StepSink, *, until_secret: bool
    ) -> FlowOutcome:
        """Run the login flow, count how it went, and keep the session a real sign-in made."""
        self.fresh = False
        try:
            outcome = await runner.run(login, sink, until_secret=until_secret)
        except FlowFailed as failure:
            refused = SignInResult.refused if failure.refused else SignInResult.failed
            count_sign_in(self.integration_id, refused)
            if failure.refused and self.gate is not None:
                await self.gate.refused(failure)
            raise
        self.fresh = not outcome.already
        count_sign_in(
            self.integration_id, SignInResult.signed_in if self.fresh else SignInResult.kept
        )
        if self.fresh:
            await self._keep(runner)
        return outcome

    async def _keep(self, runner: FlowRunner) -> None:
        """Keep the session a sign-in made, sessionStorage included, and tell the gate."""
        try:
            state = dict(await runner.page.context.storage_state())
            state[SESSION_STORAGE] = await read_session_storage(
                runner.page, runner.run_context.base_url
            )
        except PlaywrightError as error:
            raise FlowFailed(f"the browser went away: {error}", transient=True) from error
        async with self.db.session() as session:
            self.generation = await save_session(session, self.vault, self.integration_id, state)
        if self.gate is not None:
            await self.gate.succeeded()


async def _hold(lock: Lock) -> None:
    """Renew the sign-in lock while it is held, so a dead holder frees it in seconds."""
    while True:
        await asyncio.sleep(LOGIN_LOCK_S / LEASE_RENEWALS)
        try:
            await lock.reacquire()
        except (LockError, RedisError, OSError):
            return
