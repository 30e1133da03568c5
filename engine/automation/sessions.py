"""The app's logged-in browser state per integration: encrypted, versioned, shared."""

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.automation.errors import FlowFailed
from engine.automation.language import Flow
from engine.automation.runner import FlowOutcome, FlowRunner, StepSink
from engine.constants import LOGIN_LOCK_PREFIX, LOGIN_LOCK_S, LOGIN_WAIT_S
from engine.storage.db import Database
from engine.storage.models import IntegrationSession, utcnow
from engine.storage.vault import Vault


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


class SignIn:
    """Sign a run's browser context in, sharing one kept session per integration.

    The login flow runs under the integration's Redis lock, one worker at a time: a
    worker that waited loads the session another just made, so an expired session is
    re-established once, not by every worker.
    """

    def __init__(
        self,
        db: Database,
        vault: Vault,
        redis: Redis,
        integration_id: str,
        kept: StoredSession | None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.redis = redis
        self.integration_id = integration_id
        self.generation = kept.generation if kept else 0
        self.fresh = False

    async def ensure(self, runner: FlowRunner, login: Flow, sink: StepSink) -> FlowOutcome:
        """Run the login flow with the newest kept session; keep the session it makes.

        Raises FlowFailed when the flow fails or another worker's sign-in takes too long,
        and as transient when Redis, which holds the lock, cannot be reached.
        """
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
        try:
            context = runner.page.context
            async with self.db.session() as session:
                kept = await load_session(session, self.vault, self.integration_id)
            if kept is not None and kept.generation > self.generation:
                await context.add_cookies(kept.state.get("cookies", []))
                self.generation = kept.generation
            self.fresh = False
            outcome = await runner.run(login, sink)
            self.fresh = not outcome.already
            if self.fresh:
                state = dict(await context.storage_state())
                async with self.db.session() as session:
                    self.generation = await save_session(
                        session, self.vault, self.integration_id, state
                    )
            return outcome
        finally:
            # A lock Redis lost (restarted empty, or away now) only expires: the flow's
            # result stands either way.
            with contextlib.suppress(LockError, RedisError, OSError):
                await lock.release()
