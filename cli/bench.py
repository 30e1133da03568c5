"""`usher bench`: speed and memory as ratios against baselines measured in the same run."""

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from cli.embedded import EmbeddedRedis
from engine.apps.integrations import create_integration
from engine.automation.browser import BrowserPool
from engine.automation.language import Flow
from engine.automation.run import build_run
from engine.automation.runner import Artifact, FlowRunner, StepResult
from engine.automation.totp import RedisTotpLedger
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Identity, new_id, utcnow

FORM = """<!doctype html><form><label for=e>Email</label><input id=e>
<label for=f>First name</label><input id=f><label for=l>Last name</label><input id=l></form>"""
SEED_BATCH = 5_000


@dataclass
class Result:
    """One measured quantity next to its baseline from the same run."""

    name: str
    baseline_name: str
    value_ms: float
    baseline_ms: float

    @property
    def ratio(self) -> float:
        """Return how many baselines the measured value costs."""
        return self.value_ms / self.baseline_ms if self.baseline_ms else float("inf")


async def _median_ms(rounds: int, work: Callable[[int], Awaitable[Any]]) -> float:
    """Run work `rounds` times and return the median duration in milliseconds."""
    durations = []
    for index in range(rounds):
        started = time.perf_counter()
        await work(index)
        durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations)


async def _seed(db: Database, integration_id: str, count: int, prefix: str) -> None:
    """Insert users straight into the table, in batches, as a large directory would hold."""
    now = utcnow()
    async with db.session() as session:
        for start in range(0, count, SEED_BATCH):
            rows = [
                {
                    "id": new_id(),
                    "integration_id": integration_id,
                    "user_name": f"{prefix}{n}@bench.test",
                    "user_name_key": f"{prefix}{n}@bench.test",
                    "external_id": f"ext-{prefix}{n}",
                    "display_name": None,
                    "active": True,
                    "resource": {"userName": f"{prefix}{n}@bench.test"},
                    "version": 1,
                    "generation": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(start, min(start + SEED_BATCH, count))
            ]
            await session.exec(insert(Identity), params=rows)  # type: ignore[call-overload]
        await session.commit()


async def _scim_benchmarks(settings: Settings, users: int, rounds: int) -> list[Result]:
    """Time SCIM create and look-ups against a trivial request and a small directory."""
    from api.app import create_app

    embedded = EmbeddedRedis()
    db = Database.from_settings(settings)
    try:
        app = create_app(settings, redis_url=embedded.url)
        async with app.router.lifespan_context(app):
            async with db.session() as session:
                integration, token = await create_integration(
                    session, settings, app="acme", base_url="http://127.0.0.1:9"
                )
            headers = {"Authorization": f"Bearer {token}"}
            base = f"/scim/v2/{integration.id}"
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                health = await _median_ms(rounds, lambda _: client.get("/healthz"))

                async def create(n: int) -> None:
                    body = {"userName": f"new{n}@bench.test", "name": {"givenName": "B"}}
                    response = await client.post(f"{base}/Users", json=body, headers=headers)
                    response.raise_for_status()

                created = await _median_ms(rounds, create)

                async def look_up(prefix: str, size: int) -> float:
                    async def one(n: int) -> None:
                        name = f"{prefix}{(n * 7919) % size}@bench.test"
                        response = await client.get(
                            f"{base}/Users",
                            params={"filter": f'userName eq "{name}"'},
                            headers=headers,
                        )
                        assert response.json()["totalResults"] == 1

                    return await _median_ms(rounds, one)

                await _seed(db, integration.id, 100, "small")
                small = await look_up("small", 100)
                await _seed(db, integration.id, users, "big")
                big = await look_up("big", users)
    finally:
        await db.dispose()
        embedded.close()
    return [
        Result("SCIM POST /Users (IdP create)", "GET /healthz", created, health),
        Result(f"userName eq among {users:,} users", "among 100 users", big, small),
    ]


class _Discard:
    """A sink that keeps nothing, so only the runner's own cost is timed."""

    async def record(self, result: StepResult, artifacts: list[Artifact]) -> None:
        """Drop the step."""


async def _runner_benchmark(settings: Settings, rounds: int) -> list[Result]:
    """Time three fills with screenshots through the runner against raw Playwright."""
    from redis.asyncio import Redis

    flow = Flow.model_validate(
        {
            "action": "bench",
            "steps": [
                {"fill": {"label": label}, "value": "{{ user.email }}"}
                for label in ("Email", "First name", "Last name")
            ],
        }
    )
    embedded = EmbeddedRedis()
    pool = BrowserPool(settings)
    await pool.start()
    try:
        async with pool.context() as context:
            page = await context.new_page()

            async def raw(_: int) -> None:
                await page.set_content(FORM)
                for label in ("Email", "First name", "Last name"):
                    await page.get_by_label(label).fill("ann@bench.test")
                    await page.screenshot(type="png")

            run = build_run(
                base_url="http://127.0.0.1",
                template=None,
                secrets={},
                variables={"user": {"email": "ann@bench.test"}},
                ledger=RedisTotpLedger(Redis.from_url(embedded.url)),
                account="bench",
                step_timeout_ms=settings.step_timeout_ms,
            )

            async def replayed(_: int) -> None:
                await page.set_content(FORM)
                await FlowRunner(page, run).run(flow, _Discard())

            baseline = await _median_ms(rounds, raw)
            measured = await _median_ms(rounds, replayed)
    finally:
        await pool.stop()
        embedded.close()
    return [Result("runner: 3 fills + screenshots", "raw Playwright", measured, baseline)]


async def run_bench(users: int, rounds: int, flows_dir: Path | None) -> list[Result]:
    """Run every benchmark in a throw-away data dir and return the results."""
    with tempfile.TemporaryDirectory(prefix="usher-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), flows_dir=flows_dir, isolated_dns=True)
        settings.ensure_data_dir()
        results = await _scim_benchmarks(settings, users, rounds)
        return results + await _runner_benchmark(settings, max(5, rounds // 10))


def report(results: list[Result]) -> str:
    """Format the results as a table of medians and ratios."""
    lines = [f"{'measured':<38} {'ms':>8}   {'baseline':<22} {'ms':>8}  {'ratio':>7}"]
    for r in results:
        lines.append(
            f"{r.name:<38} {r.value_ms:>8.2f}   {r.baseline_name:<22} {r.baseline_ms:>8.2f}"
            f"  {r.ratio:>6.2f}x"
        )
    return "\n".join(lines)


def bench_main(users: int, rounds: int, flows_dir: Path | None) -> str:
    """Run the benchmarks and return the report."""
    return report(asyncio.run(run_bench(users, rounds, flows_dir)))
