"""Scenario 2: SIGKILL a worker during a sign-in, and during a create.

Its jobs come back within one lease plus one relay period of the kill, finish on the
other worker with exactly one account each, and the other worker keeps finishing its own
jobs meanwhile.
"""

import asyncio
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from engine.constants import LOGIN_LOCK_S
from engine.storage.models import Job, JobStatus, utcnow
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from tests.faults.support import (
    RELAY_EVERY_S,
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

LEASE_S = 3
RECLAIM_SLACK_S = 1.5
"""Polling the database and the relay's own pass take a moment beyond lease + relay."""
BACKGROUND = 4
"""Creates the surviving worker has to do while the victim dies."""
SLOW_MS = 300
"""Acme answers slowly, so the victim is killed in the middle of its flow."""

pytestmark = pytest.mark.faults


def aware(moment: datetime | None) -> datetime:
    """Return a database timestamp as an aware UTC datetime."""
    assert moment is not None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_by(job: Job, pid: int) -> bool:
    """Tell whether a job's worker name is this process's."""
    return (job.worker or "").endswith(f":{pid}")


async def wait_running_on(stack: Stack, identity_id: str, pid: int) -> Job:
    """Wait until the identity's job runs on the worker with this pid."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for job in await jobs_of(stack.db, [identity_id]):
            if job.status == JobStatus.running and run_by(job, pid):
                return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"the victim never ran {identity_id}\n{stack.logs()}")


async def wait_idle(stack: Stack) -> None:
    """Wait until no worker runs a job: a job's status is final a moment before its run ends
    (its integration's health, the next job released), and a worker stopped in between
    would hold SQLite's write lock."""
    client = Redis.from_url(stack.redis.url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not await client.keys(f"{in_progress_key_prefix}*"):
                return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise AssertionError(f"the workers never went idle\n{stack.logs()}")


async def wait_moment(what: str, happened: "object") -> None:
    """Poll Acme (in this process) every 10 ms until the moment to kill has come."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if happened():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {what}")


@pytest.mark.parametrize("moment", ["sign-in", "create"])
async def test_a_worker_killed_mid_job(
    tmp_path: Path, kind: str, outcome: Outcome, moment: str
) -> None:
    """2 worker SIGKILLed: its jobs reclaimed within lease + relay, one account each."""
    outcome.scenario += f" during {moment}"
    bound = LEASE_S + RELAY_EVERY_S
    outcome.expected = (
        f"reclaimed <= {bound}s (+{RECLAIM_SLACK_S}s polling), 1 account each, other worker busy"
    )
    env = {"USHER_JOB_LEASE_S": str(LEASE_S)}
    with AcmeServer(AcmeState(seed_users=False)) as acme:
        # Two integrations sign in as Acme's one service account; Acme's single-use TOTP
        # rule would make them take turns, one 30-second code window each.
        acme.state.totp_single_use = False
        async with (
            usher_stack(tmp_path, kind, workers=("survivor", "victim"), env=env) as stack,
            okta_client() as client,
        ):
            busy = Okta(await stack.connect(acme), client)
            fresh = Okta(await stack.connect(acme), client)
            warm = await create_all([(busy, f"warm{n}@example.com") for n in range(2)])
            await wait_settled(stack.db, warm.values(), 90, stack)  # busy keeps a session
            await wait_idle(stack)

            survivor, victim = stack.pid_of("survivor"), stack.pid_of("victim")
            acme.state.slow_ms = SLOW_MS
            attempts = acme.state.password_attempts
            target_email = f"target.{moment}@example.com"
            os.kill(survivor, signal.SIGSTOP)  # so that the victim takes the target
            try:
                # During sign-in: an integration that never signed in; during a create: one
                # with a kept session, killed once Acme has the account but before the
                # worker has recorded it.
                target = await (fresh if moment == "sign-in" else busy).create(target_email)
                await wait_running_on(stack, target, victim)
            finally:
                os.kill(survivor, signal.SIGCONT)
            background = await create_all(
                [(busy, f"background{n:02d}@example.com") for n in range(BACKGROUND)]
            )

            if moment == "sign-in":
                await wait_moment(
                    "the victim's password", lambda: acme.state.password_attempts > attempts
                )
            else:
                await wait_moment(
                    "the victim's account", lambda: acme.state.users_with_email(target_email)
                )
            stack.kill_worker("victim")
            killed_at, killed_wall = time.monotonic(), utcnow()
            orphans = {
                job.id
                for job in await jobs_of(stack.db, [target, *background.values()])
                if job.status == JobStatus.running and run_by(job, victim)
            }
            assert any(job.identity_id == target for job in await jobs_of(stack.db, [target]))

            reclaimed_after: dict[str, float] = {}
            while len(reclaimed_after) < len(orphans):
                elapsed = time.monotonic() - killed_at
                assert elapsed < bound + RECLAIM_SLACK_S + 10, (reclaimed_after, stack.logs())
                for job in await jobs_of(stack.db, [target, *background.values()]):
                    moved = job.status != JobStatus.running or not run_by(job, victim)
                    if job.id in orphans and job.id not in reclaimed_after and moved:
                        reclaimed_after[job.id] = elapsed
                await asyncio.sleep(0.1)
            slowest_reclaim = max(reclaimed_after.values())
            acme.state.slow_ms = 0

            everyone = {target_email: target, **warm, **background}
            latest = await wait_settled(stack.db, everyone.values(), 180, stack)
            done_after = time.monotonic() - killed_at
            jobs = await jobs_of(stack.db, everyone.values())
            orphaned = {job.identity_id for job in jobs if job.id in orphans}
            recovered = max(aware(j.finished_at) for j in jobs if j.identity_id in orphaned)
            survivor_done = [
                job
                for job in jobs
                if job.identity_id not in orphaned
                and run_by(job, survivor)
                and killed_wall < aware(job.finished_at) <= recovered
            ]
            target_done = (aware(latest[target].finished_at) - killed_wall).total_seconds()
            counts = account_counts(acme, everyone)
            failed = failed_jobs(jobs)
            outcome.observed = (
                f"{len(orphans)} orphaned, reclaimed <= {slowest_reclaim:.1f}s, target done "
                f"{target_done:.0f}s and all {done_after:.0f}s after the kill; "
                f"{counts.get(1, 0)}/{len(everyone)} with 1 "
                f"account; survivor finished {len(survivor_done)} other job(s) meanwhile"
            )
            assert counts == {1: len(everyone)}, counts
            assert latest[target].status == JobStatus.succeeded, latest[target].error
            assert latest[target].attempt >= 2, "the target was not reclaimed"
            assert not failed, [(j.id, j.status, j.error) for j in failed]
            assert slowest_reclaim <= bound + RECLAIM_SLACK_S, reclaimed_after
            assert survivor_done, (
                "the other worker finished nothing while the victim's jobs came back"
            )
            assert stack.workers["survivor"].poll() is None, stack.logs()
            # A reclaimed sign-in waits for the dead worker's sign-in lock (LOGIN_LOCK_S).
            assert done_after <= bound + LOGIN_LOCK_S + 90, done_after
