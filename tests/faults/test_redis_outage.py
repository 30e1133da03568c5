"""Scenario 3: Redis stops for 15 s during a stream of creates and renames, and comes back
empty on the same port: the workers live through it and every change lands once."""

import asyncio
import time
from pathlib import Path

import pytest

from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from tests.faults.support import (
    Okta,
    Outcome,
    Stack,
    account_counts,
    create_all,
    failed_jobs,
    jobs_of,
    okta_client,
    usher_stack,
    wait_settled,
)

OUTAGE_S = 15
TICK_S = 2.5
"""While Redis is away, every tick creates one user and renames another."""
EARLY = 3
"""Users provisioned before the outage, so that there are accounts to rename."""
SLOW_MS = 150
"""Jobs are still running when Redis goes."""

pytestmark = pytest.mark.faults


def assert_alive(stack: Stack) -> None:
    """Fail with the logs if a worker or the API exited."""
    alive = {**stack.alive(), "serve": stack.serve.poll() is None}
    assert all(alive.values()), f"exited: {alive}\n{stack.logs()}"


async def test_redis_stops_and_returns_empty(tmp_path: Path, kind: str, outcome: Outcome) -> None:
    """3 Redis down 15 s, back empty: every identity reconciled, every rename applied."""
    outcome.expected = "workers alive; every identity 1 account with its last name; 0 failed"
    with AcmeServer(AcmeState(seed_users=False)) as acme:
        async with usher_stack(tmp_path, kind) as stack, okta_client() as client:
            okta = Okta(await stack.connect(acme), client)
            ids = await create_all([(okta, f"early{n}@example.com") for n in range(EARLY)])
            family = dict.fromkeys(ids, "Fault")
            await wait_settled(stack.db, ids.values(), 90, stack)

            async def create(email: str) -> None:
                ids[email] = await okta.create(email)
                family[email] = "Fault"

            async def rename(tick: int) -> None:
                email = list(ids)[tick % len(ids)]
                family[email] = f"Renamed{tick:02d}"
                await okta.rename(ids[email], family[email])

            acme.state.slow_ms = SLOW_MS
            for n in range(2):
                await create(f"before{n}@example.com")
            await asyncio.sleep(0.5)
            stack.redis.kill()
            outage_started = time.monotonic()
            tick = 0
            while time.monotonic() - outage_started < OUTAGE_S:
                assert_alive(stack)
                await create(f"outage{tick:02d}@example.com")
                await rename(tick)
                tick += 1
                await asyncio.sleep(TICK_S)
            assert_alive(stack)
            stack.redis.start()
            returned = time.monotonic()
            acme.state.slow_ms = 0
            await create("after@example.com")
            await rename(tick)
            renames = tick + 1

            latest = await wait_settled(stack.db, ids.values(), 180, stack)
            settled = time.monotonic() - returned
            assert_alive(stack)
            jobs = await jobs_of(stack.db, ids.values())
            counts = account_counts(acme, ids)
            wrong_name = [
                email
                for email in ids
                if [u.last_name for u in acme.state.users_with_email(email)] != [family[email]]
            ]
            failed = failed_jobs(jobs)
            outcome.observed = (
                f"workers alive; {len(ids)} identities, {renames} renames: "
                f"{counts.get(1, 0)} with 1 account, {len(wrong_name)} with a stale name; "
                f"{len(failed)} failed; settled {settled:.0f}s after Redis returned"
            )
            assert counts == {1: len(ids)}, counts
            assert not wrong_name, [
                (e, family[e], acme.state.users_with_email(e)) for e in wrong_name
            ]
            assert all(job.status == JobStatus.succeeded for job in latest.values())
            assert not failed, [(j.id, j.status, j.error) for j in failed]
