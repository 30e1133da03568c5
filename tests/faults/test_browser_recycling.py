"""Scenario 5: a worker recycles its Chromium every 10 jobs while jobs keep coming: none lost."""

from pathlib import Path

import pytest

from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from tests.faults.support import (
    LAUNCHED,
    Okta,
    Outcome,
    account_counts,
    create_all,
    failed_jobs,
    jobs_of,
    okta_client,
    usher_stack,
    wait_settled,
)

JOBS = 15
"""Enough for a recycle while the other slot's job still runs on the old Chromium, and more
jobs after it on the new one, within the suite's budget (support.BUDGET)."""
JOBS_BEFORE_RESTART = 10
RECYCLES = (JOBS - 1) // JOBS_BEFORE_RESTART
"""At least this many fresh Chromiums after the first: each serves 10 jobs' contexts."""

pytestmark = pytest.mark.faults


async def test_a_worker_recycling_its_browser(tmp_path: Path, kind: str, outcome: Outcome) -> None:
    """5 browser recycling every 10 jobs under load: no job lost."""
    outcome.expected = f"{JOBS} accounts, 0 failed, >= {RECYCLES} recycled Chromiums"
    env = {
        "USHER_BROWSER_JOBS_BEFORE_RESTART": str(JOBS_BEFORE_RESTART),
        "USHER_WORKER_MAX_JOBS": "2",
    }
    with AcmeServer(AcmeState(seed_users=False)) as acme:
        async with (
            usher_stack(tmp_path, kind, workers=("worker",), env=env) as stack,
            okta_client() as client,
        ):
            okta = Okta(await stack.connect(acme), client)
            emails = [f"recycled{n:02d}@example.com" for n in range(JOBS)]
            created = await create_all([(okta, email) for email in emails])
            latest = await wait_settled(stack.db, created.values(), 300, stack)

            jobs = await jobs_of(stack.db, created.values())
            counts = account_counts(acme, emails)
            failed = failed_jobs(jobs)
            recycled = len(LAUNCHED.findall(stack.log("worker"))) - 1
            outcome.observed = (
                f"{counts.get(1, 0)} accounts, {len(failed)} failed, {recycled} recycled Chromiums"
            )
            assert counts == {1: JOBS}, counts
            assert not failed, [(j.id, j.status, j.error) for j in failed]
            assert all(job.status == JobStatus.succeeded for job in latest.values())
            assert recycled >= RECYCLES, stack.log("worker")[-5000:]
            assert stack.workers["worker"].poll() is None
