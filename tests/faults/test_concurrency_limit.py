"""Scenario 8: an app instance never sees more sessions at work than its template allows,
however many worker slots are free."""

from pathlib import Path

import pytest

from engine.apps.template import load_app
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from tests.faults.support import (
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
from tests.harness import ROOT

pytestmark = pytest.mark.faults

JOBS = 8
"""Enough for every slot of three workers to want a job at once."""
WORKERS = ("worker-1", "worker-2", "worker-3")
"""Three workers of two slots: six jobs could run at once against one Acme."""
SLOW_MS = 200
"""Every request takes a while, so sessions at work overlap in Acme's in-flight gauge."""


async def test_the_integration_limit_holds(tmp_path: Path, kind: str, outcome: Outcome) -> None:
    """8 concurrency limit: one integration, six slots → at most `limits.concurrency` at once."""
    limit = load_app(ROOT / "flows", "acme").limits.concurrency
    outcome.expected = f"<= {limit} requests in flight at Acme, {JOBS} accounts"
    with AcmeServer(AcmeState(seed_users=False)) as acme:
        async with (
            usher_stack(tmp_path, kind, workers=WORKERS) as stack,
            okta_client() as client,
        ):
            okta = Okta(await stack.connect(acme), client)
            acme.state.slow_ms = SLOW_MS
            acme.state.reset_in_flight()
            emails = [f"limited{n:02d}@example.com" for n in range(JOBS)]
            created = await create_all([(okta, email) for email in emails])
            latest = await wait_settled(stack.db, created.values(), 300, stack)
            acme.state.slow_ms = 0

            most = acme.state.max_in_flight
            counts = account_counts(acme, emails)
            failed = failed_jobs(await jobs_of(stack.db, created.values()))
            outcome.observed = (
                f"<= {most} requests in flight at Acme, {counts.get(1, 0)} accounts, "
                f"{len(failed)} failed"
            )
            assert most <= limit, f"Acme served {most} requests at once (limit {limit})"
            assert counts == {1: JOBS}, counts
            assert all(job.status == JobStatus.succeeded for job in latest.values())
