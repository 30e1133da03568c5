"""Signing in: a kept session still valid is checked without the sign-in lock; a sign-in that
must type credentials takes it first.

The second worker's Redis is one nothing listens on: a step that needs the lock fails at
once (transient), so what runs without the lock is told apart with no timing at all.
"""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from engine.apps.integrations import create_integration
from engine.apps.template import AppTemplate, load_app
from engine.automation.browser import BrowserPool
from engine.automation.errors import FlowFailed
from engine.automation.language import Flow, load_flow
from engine.automation.run import build_run, open_runner
from engine.automation.sessions import SignIn, StoredSession, load_session
from engine.automation.totp import RedisTotpLedger
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.vault import Vault
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from tests.engine.flow_pages import KeepingSink
from tests.harness import ROOT, free_port

TOTP_PERIOD_S = 10
"""Acme's codes last ten seconds, as in the other tests: a first sign-in waits less."""


@pytest.fixture
def acme() -> Iterator[AcmeServer]:
    """Run an Acme of its own for each test."""
    with AcmeServer(AcmeState(totp_period_s=TOTP_PERIOD_S)) as server:
        yield server


@dataclass
class Worker:
    """What a worker signs in with: the database, the vault, its Redis, Acme's template."""

    db: Database
    vault: Vault
    redis: Redis
    redis_url: str
    integration_id: str
    template: AppTemplate
    acme: AcmeServer

    @property
    def login(self) -> Flow:
        """Return Acme's login flow."""
        return load_flow(self.template.flow_path("login"))

    async def kept(self) -> StoredSession:
        """Return the integration's kept session."""
        async with self.db.reader() as session:
            kept = await load_session(session, self.vault, self.integration_id)
        assert kept is not None
        return kept

    async def sign_in(
        self, browsers: BrowserPool, redis: Redis, kept: StoredSession | None
    ) -> tuple[SignIn, KeepingSink]:
        """Sign a fresh context in as a job does, from a kept session if given."""
        run = build_run(
            base_url=self.acme.url,
            template=self.template,
            secrets=self.acme.state.service_account(),
            variables={"integration": {"id": self.integration_id, "base_url": self.acme.url}},
            ledger=RedisTotpLedger(Redis.from_url(self.redis_url)),
            account=self.integration_id,
            step_timeout_ms=4000,
        )
        sink = KeepingSink()
        sign_in = SignIn(self.db, self.vault, redis, self.integration_id, kept)
        async with open_runner(browsers, run, kept.state if kept else None) as runner:
            await sign_in.ensure(runner, self.login, sink)
        return sign_in, sink


@pytest.fixture
async def worker(
    sqlite_database: Database, acme: AcmeServer, redis_url: str, tmp_path: Path
) -> AsyncIterator[Worker]:
    """Connect an Acme integration and sign it in once for real, keeping the session."""
    settings = Settings(flows_dir=ROOT / "flows")
    async with sqlite_database.session() as session:
        integration, _token = await create_integration(
            session, settings, app="acme", base_url=acme.url, import_accounts=False
        )
    redis = Redis.from_url(redis_url)
    yield Worker(
        sqlite_database,
        Vault.from_path(tmp_path / "vault.key"),
        redis,
        redis_url,
        integration.id,
        load_app(ROOT / "flows", "acme"),
        acme,
    )
    await redis.aclose()


def unreachable_redis() -> Redis:
    """Return a Redis client for a port nothing listens on: every command fails at once."""
    return Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)


async def test_a_valid_kept_session_is_checked_without_the_sign_in_lock(
    browsers: BrowserPool, worker: Worker
) -> None:
    """A second worker whose Redis (and so the lock) is out of reach still runs: its kept
    session is valid, the login flow ends `already`, no password is typed."""
    first, _ = await worker.sign_in(browsers, worker.redis, None)
    assert first.fresh
    typed = worker.acme.state.password_attempts

    second, sink = await worker.sign_in(browsers, unreachable_redis(), await worker.kept())

    assert not second.fresh
    assert [r.status for r in sink.results][-1] == "already"
    assert worker.acme.state.password_attempts == typed


async def test_a_sign_in_that_must_type_credentials_takes_the_lock_first(
    browsers: BrowserPool, worker: Worker
) -> None:
    """Acme ended every session: the check without the lock stops before the username is
    typed, and the sign-in for real needs the lock, which is out of reach: a transient
    failure, and Acme saw no password."""
    await worker.sign_in(browsers, worker.redis, None)
    kept = await worker.kept()
    worker.acme.state.expire_sessions()
    typed = worker.acme.state.password_attempts

    with pytest.raises(FlowFailed) as failed:
        await worker.sign_in(browsers, unreachable_redis(), kept)

    assert failed.value.transient and "sign-in lock unreachable" in str(failed.value)
    assert worker.acme.state.password_attempts == typed
