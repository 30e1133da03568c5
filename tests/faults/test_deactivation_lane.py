"""Scenario 7: deactivations jump a backlog of creates. Someone who leaves loses access
before the onboarding burst in front of them is done, even when the app is flaky."""

import asyncio
import time
from pathlib import Path

import pytest

from engine.jobs import state
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from tests.faults.support import (
    Okta,
    Outcome,
    create_all,
    jobs_of,
    newest,
    okta_client,
    status_counts,
    usher_stack,
    wait_settled,
)

pytestmark = pytest.mark.faults

DEACTIVATIONS = 5
BACKLOG = 20
"""The issue asks for 50 deactivations behind 200 creates; this keeps its 1:4 shape at a size
the suite's time budget affords (see tests/faults/support.py, BUDGET)."""
STILL_PENDING = BACKLOG // 2
"""Before the creates drain, with a margin: every deactivation is done while at least half
of the backlog still waits. Without one, a fair race between the lanes for the integration's
slots would finish the deactivations somewhere near the end of the backlog and pass or fail
by luck; a lane that goes first finishes them while nearly all of it waits."""
ERROR_RATE = 0.2
DEADLINE_S = 240
"""A safety net: the scenario ends as soon as the deactivations are done or half the
backlog has drained."""


async def test_deactivations_jump_the_backlog(tmp_path: Path, kind: str, outcome: Outcome) -> None:
    """7 deactivation lane: 20% faults, backlog of creates → deactivations done first."""
    outcome.expected = (
        f"{DEACTIVATIONS} deactivated while >= {STILL_PENDING} of {BACKLOG} creates pending"
    )
    with AcmeServer(AcmeState(seed_users=False)) as acme:
        async with usher_stack(tmp_path, kind) as stack, okta_client() as client:
            okta = Okta(await stack.connect(acme), client)
            leavers = await create_all(
                [(okta, f"leaver{n:02d}@example.com") for n in range(DEACTIVATIONS)]
            )
            await wait_settled(stack.db, leavers.values(), 240, stack)
            assert all(acme.state.users_with_email(email)[0].active for email in leavers)

            acme.state.error_rate = ERROR_RATE
            started = time.monotonic()
            backlog = await create_all(
                [(okta, f"joiner{n:03d}@example.com") for n in range(BACKLOG)]
            )
            gate = asyncio.Semaphore(16)

            async def leave(identity_id: str) -> None:
                async with gate:
                    await okta.deactivate(identity_id)

            await asyncio.gather(*(leave(identity_id) for identity_id in leavers.values()))

            def deactivated() -> int:
                return sum(
                    not user.active
                    for email in leavers
                    for user in acme.state.users_with_email(email)
                )

            pending_creates = BACKLOG
            while time.monotonic() - started < DEADLINE_S:
                leaver_jobs = newest(await jobs_of(stack.db, leavers.values()))
                create_jobs = await jobs_of(stack.db, backlog.values())
                pending_creates = sum(job.status not in state.FINAL for job in create_jobs)
                leavers_done = all(job.status in state.FINAL for job in leaver_jobs.values())
                done = leavers_done and deactivated() == DEACTIVATIONS
                if done or pending_creates < STILL_PENDING:
                    break
                assert all(stack.alive().values()), stack.logs()
                await asyncio.sleep(0.25)
            seconds = time.monotonic() - started
            acme.state.error_rate = 0
            done = deactivated()
            leaver_jobs = newest(await jobs_of(stack.db, leavers.values()))
            outcome.observed = (
                f"{done}/{DEACTIVATIONS} deactivated after {seconds:.0f}s with "
                f"{pending_creates}/{BACKLOG} creates pending; leavers' jobs "
                f"{status_counts(leaver_jobs.values())}"
            )
            assert done == DEACTIVATIONS, outcome.observed
            assert pending_creates >= STILL_PENDING, "the backlog drained first"
            assert all(job.status == JobStatus.succeeded for job in leaver_jobs.values())
            for email in leavers:
                assert len(acme.state.users_with_email(email)) == 1, email
