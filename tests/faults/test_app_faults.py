"""Scenario 4: a flaky, slow app. One request in five answers 500, every page takes 300 ms,
and one POST in five fails after the app made the change: the self-checking flows provision
every account, and none twice."""

from pathlib import Path

import pytest

from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.acme.state import AcmeState
from tests.faults.support import (
    Okta,
    Outcome,
    account_counts,
    create_all,
    doubled,
    jobs_of,
    okta_client,
    usher_stack,
    wait_settled,
)

ACCOUNTS = 6
"""Jobs here are slow (300 ms a page, back-offs of up to 30 s) more than costly; each of the
six meets injected 500s several times (the row in the table counts them)."""
INTEGRATIONS = 2
"""Two integrations of the one Acme, so that four jobs run at once (`limits.concurrency` is
2 per integration) and the slow pages do not serialise the scenario."""
ERROR_RATE = 0.2
ERROR_AFTER_RATE = 0.2
SLOW_MS = 300
COMEBACK_S = "5"
"""A job that used up its attempts comes back after this (default 60 s), within the run."""

pytestmark = pytest.mark.faults


async def test_a_flaky_slow_app(tmp_path: Path, kind: str, outcome: Outcome) -> None:
    """4 app faults: 20% 500s, 300 ms pages, 20% POSTs fail after the change → none doubled."""
    outcome.expected = f"{ACCOUNTS} accounts, 0 doubled"
    env = {"USHER_COMEBACK_BASE_S": COMEBACK_S}
    with AcmeServer(AcmeState(seed_users=False)) as acme:
        async with usher_stack(tmp_path, kind, env=env) as stack, okta_client() as client:
            # Two integrations sign in as Acme's one service account; Acme's single-use TOTP
            # rule would make them take turns, one 30-second code window each.
            acme.state.totp_single_use = False
            oktas = [Okta(await stack.connect(acme), client) for _ in range(INTEGRATIONS)]
            warm = await create_all(
                [(okta, f"warm{n}@example.com") for n, okta in enumerate(oktas)]
            )
            await wait_settled(stack.db, warm.values(), 90, stack)  # the kept sessions

            state = acme.state
            state.error_rate, state.error_after_rate = ERROR_RATE, ERROR_AFTER_RATE
            state.slow_ms = SLOW_MS
            emails = [f"flaky{n:02d}@example.com" for n in range(ACCOUNTS)]
            created = await create_all(
                [(oktas[n % INTEGRATIONS], email) for n, email in enumerate(emails)]
            )
            latest = await wait_settled(stack.db, created.values(), 420, stack)
            state.error_rate = state.error_after_rate = state.slow_ms = 0

            jobs = await jobs_of(stack.db, created.values())
            counts = account_counts(acme, emails)
            attempts = sum(job.attempt for job in jobs)
            outcome.observed = (
                f"{counts.get(1, 0)} accounts, {doubled(counts)} doubled "
                f"({state.errors_injected} 500s injected; {len(jobs)} jobs, {attempts} attempts)"
            )
            assert counts == {1: ACCOUNTS}, counts
            assert all(job.status == JobStatus.succeeded for job in latest.values()), [
                (job.status, job.error) for job in latest.values()
            ]
            assert state.errors_injected > 0
