"""Metrics from every process: after one real job, the API's /metrics and the worker's own
metrics port (`usher worker --metrics-port`) both show what moved, scraped over HTTP."""

import asyncio
import subprocess
import time

import httpx

from engine.storage.db import Database
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import job_detail, scim_post, wait_job
from tests.harness import Connected, Usher, free_port, start_process, stop_process
from tests.metrics import Samples, scrape, value

TOKEN = "worker-metrics-token"
METRICS_START_S = 60
"""How long a new worker may take to answer on its metrics port on a loaded machine."""
CONTEXTS_CLOSED_S = 60
"""How long the worker may take to close every context: the session's jobs still retrying
from earlier tests reach this worker too, while the session's own worker is paused."""


async def scrape_all_closed(url: str) -> Samples:
    """Scrape the worker until it holds no browser context open; return that scrape."""
    deadline = time.monotonic() + CONTEXTS_CLOSED_S
    while True:
        seen = await scrape(url, TOKEN)
        if value(seen, "usher_browser_contexts_open") == 0 or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.2)


async def wait_metrics(url: str, worker: subprocess.Popen[bytes]) -> None:
    """Poll a worker's metrics port until it answers, failing if the worker died."""
    deadline = time.monotonic() + METRICS_START_S
    async with httpx.AsyncClient(timeout=5.0) as client:
        while time.monotonic() < deadline:
            assert worker.poll() is None, "the worker exited"
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise AssertionError(f"nothing answered at {url} within {METRICS_START_S} s")


async def test_the_api_and_a_worker_each_serve_what_moved(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """One SCIM create, run to success by a worker with a metrics port: the API counted the
    request, the worker its job, its steps, the sign-in and the context it opened and closed."""
    port = free_port()
    worker_url = f"http://127.0.0.1:{port}/metrics"
    env = usher.worker_env(metrics_token=TOKEN)
    with usher.own_worker_paused():
        log = usher.log_dir / "worker-metrics.log"
        worker = start_process("worker", env, log, "--metrics-port", str(port))
        try:
            await wait_metrics(worker_url, worker)
            async with httpx.AsyncClient() as client:
                refused = await client.get(worker_url)
            assert refused.status_code == 401
            api_before = await scrape(f"{usher.api}/metrics")

            response = await scim_post(connected, okta_user("mo.metrics@example.com", "Mo"))
            assert response.status_code == 201, response.text
            job = await wait_job(usher_db, response.json()["id"])
            assert job.status == JobStatus.succeeded, job.error
            detail = await job_detail(usher, connected, job.id)

            api = await scrape(f"{usher.api}/metrics")
            seen = await scrape_all_closed(worker_url)
        finally:
            stop_process(worker)

    def moved(name: str, **labels: str) -> float:
        return value(api, name, **labels) - value(api_before, name, **labels)

    post = {"method": "POST", "resource": "Users"}
    assert moved("usher_scim_requests_total", **post, status="201") == 1
    assert moved("usher_scim_request_duration_seconds_count", **post) == 1
    assert value(api, "usher_metrics_database_ok") == 1
    breaker = {"integration": connected.id, "app": "acme"}
    assert value(api, "usher_integration_breaker", **breaker, state="closed") == 1

    assert value(seen, "usher_job_duration_seconds_count", app="acme", outcome="succeeded") >= 1
    assert value(seen, "usher_job_duration_seconds_sum", app="acme", outcome="succeeded") > 0
    ran = [a for a in detail["actions"] if a["name"] == "create_user"]
    steps = len(ran[0]["steps"])
    assert value(seen, "usher_step_duration_seconds_count", app="acme", action="create_user") >= (
        steps
    )
    created = {"app": "acme", "action": "create_user", "outcome": "succeeded"}
    assert value(seen, "usher_action_duration_seconds_count", **created) >= 1
    signed = {"integration": connected.id}
    assert value(seen, "usher_sign_ins_total", **signed, result="signed_in") >= 1
    assert value(seen, "usher_sign_ins_total", **signed, result="refused") == 0
    assert value(seen, "usher_browser_launches_total") >= 1
    assert value(seen, "usher_browser_contexts_open") == 0
    assert not has_database_gauges(seen)


def has_database_gauges(samples: Samples) -> bool:
    """Tell whether a scrape carries the gauges only the API reads from the database."""
    return any(name in ("usher_jobs", "usher_queue_depth") for name, _ in samples)
