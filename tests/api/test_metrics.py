"""The API's /metrics without any worker: SCIM counted, the queue and breakers read from the
database, the endpoint turned off or behind its token, and a database that does not answer."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from engine.apps.integrations import create_integration
from engine.jobs.health import scrape
from engine.settings import Settings
from engine.storage.db import Database
from fixtures.idp import okta_user
from tests.databases import DATABASES, private_database
from tests.harness import ROOT, other_redis_db
from tests.metrics import Samples, parse, present, value

METRICS_REDIS_DB = 11
"""Where these tests' jobs are queued: no worker reads this Redis database."""
SCIM = "application/scim+json"
TOKEN = "metrics-token-for-the-test"


@asynccontextmanager
async def served(
    settings: Settings, redis_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    """Run the real API app in this process, lifespan and all; yield a client and its database."""
    app = create_app(settings, redis_url=other_redis_db(redis_url, METRICS_REDIS_DB))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://usher") as client,
    ):
        yield client, app.state.db


async def metrics_of(client: httpx.AsyncClient, **headers: str) -> Samples:
    """Scrape the API's /metrics and parse it with prometheus_client's parser."""
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture(params=DATABASES)
async def api_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings of an API on a fresh database of each kind."""
    async with private_database(request.param, tmp_path, prefix="usher_metrics") as url:
        yield Settings(data_dir=tmp_path, database_url=url, flows_dir=ROOT / "flows")


async def test_the_api_counts_scim_and_reads_the_queue_from_the_database(
    api_settings: Settings, redis_url: str
) -> None:
    """A SCIM create and a refused read move their counters; the job they queued shows as
    queued in its lane with its age, the integration's breaker as closed; no user is a label."""
    async with served(api_settings, redis_url) as (client, db):
        async with db.session() as session:
            integration, token = await create_integration(
                session, api_settings, app="acme", base_url="http://127.0.0.1:9"
            )
        scim = f"/scim/v2/{integration.id}"
        before = await metrics_of(client)

        created = await client.post(
            f"{scim}/Users",
            json=okta_user("mia.metrics@example.com", "Mia", "Metrics"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM},
        )
        assert created.status_code == 201, created.text
        refused = await client.get(f"{scim}/Users", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401
        response = await client.get("/metrics")
        after = parse(response.text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    post = {"method": "POST", "resource": "Users"}
    assert moved("usher_scim_requests_total", **post, status="201") == 1
    assert moved("usher_scim_requests_total", method="GET", resource="Users", status="401") == 1
    assert moved("usher_scim_request_duration_seconds_count", **post) == 1
    assert moved("usher_scim_request_duration_seconds_sum", **post) > 0

    assert value(after, "usher_metrics_database_ok") == 1
    assert value(after, "usher_jobs", lane="normal", state="queued") == 1
    assert value(after, "usher_jobs", lane="normal", state="running") == 0
    assert present(after, "usher_jobs", lane="urgent", state="queued")
    assert value(after, "usher_queue_depth", lane="normal") == 1
    assert 0 <= value(after, "usher_oldest_queued_job_age_seconds") < 60
    breaker = {"integration": integration.id, "app": "acme"}
    assert value(after, "usher_integration_breaker", **breaker, state="closed") == 1
    assert value(after, "usher_integration_breaker", **breaker, state="open") == 0

    identity = created.json()["id"]
    for leak in ("mia.metrics", identity, created.headers["X-Usher-Job"]):
        assert leak not in response.text


async def test_metrics_can_be_turned_off_or_kept_behind_a_token(
    tmp_path: Path, redis_url: str
) -> None:
    """USHER_METRICS_ENABLED=false answers 404; with USHER_METRICS_TOKEN only its bearer reads."""
    base = Settings(data_dir=tmp_path, flows_dir=ROOT / "flows")
    async with served(base.model_copy(update={"metrics_enabled": False}), redis_url) as (client, _):
        off = await client.get("/metrics")
        assert off.status_code == 404
        assert "USHER_METRICS_ENABLED" in off.json()["detail"]

    async with served(base.model_copy(update={"metrics_token": TOKEN}), redis_url) as (client, _):
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": TOKEN}):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"] == "Bearer"
        seen = await metrics_of(client, Authorization=f"Bearer {TOKEN}")
        assert value(seen, "usher_metrics_database_ok") == 1


async def test_a_database_that_does_not_answer_leaves_its_gauges_out() -> None:
    """The process's own metrics are still served; the read is reported as failed."""
    db = Database("postgresql+asyncpg://usher@127.0.0.1:1/usher")
    try:
        body, content_type = await scrape(db, None)
    finally:
        await db.dispose()
    assert content_type.startswith("text/plain")
    seen = parse(body.decode())
    assert value(seen, "usher_metrics_database_ok") == 0
    assert not any(name == "usher_jobs" for name, _ in seen)
    assert any(name == "process_cpu_seconds_total" for name, _ in seen)
