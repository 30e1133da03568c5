"""Redis going away never crashes a worker nor fails a job for good: each piece in turn."""

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, create_pool
from arq.worker import func
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.automation.errors import FlowFailed
from engine.automation.sessions import SignIn
from engine.automation.totp import RedisTotpLedger
from engine.constants import REDIS_RECONNECT_BACKOFF_S, REDIS_RECONNECT_JITTER
from engine.jobs.queue import JobQueue, reconnect_delay_s, redis_settings, wait_for_redis
from engine.jobs.runner import JobRunner, JobServices
from engine.jobs.worker import UsherWorker
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Integration, JobStatus
from tests.harness import ROOT, free_port
from tests.jobs.support import new_identity, pending_job, reload


@pytest.fixture
def nowhere() -> str:
    """Return the URL of a Redis that is not there: nothing listens on the port."""
    return f"redis://127.0.0.1:{free_port()}/0"


class GaveUp(Exception):
    """Raised by a test's sleep to stop an endless wait."""


async def test_waiting_for_redis_backs_off_growing_capped_and_jittered(nowhere: str) -> None:
    """Each failed try waits longer, up to the cap (with jitter), and never gives up by itself."""
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 8:
            raise GaveUp

    with pytest.raises(GaveUp):
        await wait_for_redis(nowhere, sleep=sleep)
    low, high = 1 - REDIS_RECONNECT_JITTER, 1 + REDIS_RECONNECT_JITTER
    for tries, delay in enumerate(delays, start=1):
        base = REDIS_RECONNECT_BACKOFF_S[min(tries, len(REDIS_RECONNECT_BACKOFF_S)) - 1]
        assert base * low <= delay <= base * high
    assert max(reconnect_delay_s(100) for _ in range(50)) <= REDIS_RECONNECT_BACKOFF_S[-1] * high


async def test_waiting_for_a_redis_that_answers_returns_at_once(redis_url: str) -> None:
    """No failed try, no wait."""
    assert await wait_for_redis(redis_url) == 0


async def test_a_broken_poll_gives_its_job_slot_back(redis_url: str) -> None:
    """arq counts a slot before `start_jobs`' pipeline; a Redis error there must not keep it.

    With one slot, a kept slot would leave the worker polling forever without taking a job.
    """
    queue = f"usher:test:slots:{uuid.uuid4().hex}"
    pool = await create_pool(redis_settings(redis_url), default_queue_name=queue)
    original: Callable[..., Any] = pool.pipeline
    broken: list[bool] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        # The first transaction is `start_jobs`' claim of the first job (after arq's
        # start-up, whose info pipeline is not a transaction).
        if kwargs.get("transaction") and not broken:
            broken.append(True)
            raise RedisConnectionError("Redis went away (injected)")
        return original(*args, **kwargs)

    ran: list[str] = []

    async def note(ctx: dict[str, Any], name: str) -> None:
        ran.append(name)

    for name in ("first", "second"):
        await pool.enqueue_job("note", name, _queue_name=queue)
    pool.pipeline = pipeline  # type: ignore[method-assign]
    worker = UsherWorker(
        redis_url=redis_url,
        functions=[func(note, name="note")],
        queue_name=queue,
        redis_pool=pool,
        max_jobs=1,
        poll_delay=0.01,
        keep_result=0,
        handle_signals=False,
    )
    running = asyncio.create_task(worker.async_run())
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while sorted(ran) != ["first", "second"]:
            assert not running.done(), running
            assert asyncio.get_running_loop().time() < deadline, (ran, worker.job_counter)
            await asyncio.sleep(0.02)
        assert broken and worker.job_counter == 0
    finally:
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_the_totp_ledger_without_redis_fails_transiently(nowhere: str) -> None:
    """No code is typed when the ledger cannot prove it unused; the job tries again."""
    redis = Redis.from_url(nowhere)
    try:
        with pytest.raises(FlowFailed) as failed:
            await RedisTotpLedger(redis).claim("integration", 1)
    finally:
        await redis.aclose()
    assert failed.value.transient


async def test_the_sign_in_lock_without_redis_fails_transiently(nowhere: str) -> None:
    """The sign-in lock lives in Redis: without it the login is tried again later."""
    redis = Redis.from_url(nowhere)
    sign_in = SignIn(None, None, redis, "integration", None)  # type: ignore[arg-type]
    try:
        with pytest.raises(FlowFailed) as failed:
            await sign_in.ensure(None, None, None)  # type: ignore[arg-type]
    finally:
        await redis.aclose()
    assert failed.value.transient and "lock" in str(failed.value)


async def test_a_redis_error_in_a_job_retries_it(
    database: Database, nowhere: str, tmp_path: Path
) -> None:
    """A Redis error escaping a job is a transient fault: retrying, not an internal error.

    The integration's app exists nowhere, so the job needs no gate and meets Redis only
    inside.
    """
    identity = await new_identity(database)
    async with database.session() as session:
        integration = await session.get(Integration, identity.integration_id)
        assert integration is not None
        integration.app = "no-such-app"
        session.add(integration)
        await session.commit()
    job = await pending_job(database, identity)
    redis = Redis.from_url(nowhere)
    queue = JobQueue(ArqRedis.from_url(nowhere))
    services = JobServices(
        settings=Settings(flows_dir=tmp_path),
        db=database,
        vault=None,  # type: ignore[arg-type]
        evidence=None,  # type: ignore[arg-type]
        browsers=None,  # type: ignore[arg-type]
        ledger=RedisTotpLedger(redis),
        queue=queue,
        redis=redis,
    )
    runner = JobRunner(services)

    async def reconcile(*_: Any) -> str:
        raise RedisConnectionError("Redis went away (injected)")

    runner._reconcile = reconcile  # type: ignore[method-assign]
    try:
        status = await runner.run(job.id, job.attempt)
    finally:
        await redis.aclose()
        await queue.close()
    stored = await reload(database, job.id)
    assert status == JobStatus.retrying
    assert (stored.status, stored.attempt) == (JobStatus.retrying, job.attempt + 1)
    assert stored.error is not None and stored.error.startswith("Redis unavailable")


async def test_a_job_whose_gate_is_unreachable_is_held_not_run(
    database: Database, nowhere: str
) -> None:
    """No slot can be taken without Redis: the job is held a moment and given back."""
    job = await pending_job(database, await new_identity(database))
    redis = Redis.from_url(nowhere)
    queue = JobQueue(ArqRedis.from_url(nowhere))
    services = JobServices(
        settings=Settings(flows_dir=ROOT / "flows"),
        db=database,
        vault=None,  # type: ignore[arg-type]
        evidence=None,  # type: ignore[arg-type]
        browsers=None,  # type: ignore[arg-type]
        ledger=RedisTotpLedger(redis),
        queue=queue,
        redis=redis,
    )
    try:
        status = await JobRunner(services).run(job.id, job.attempt)
    finally:
        await redis.aclose()
        await queue.close()
    stored = await reload(database, job.id)
    assert status == "gated"
    assert (stored.status, stored.attempt) == (JobStatus.queued, job.attempt)
    assert stored.not_before is not None
