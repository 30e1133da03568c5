"""The arq worker: reconcile jobs, single-flight per identity, and the relay cron."""

import asyncio
import contextlib
import logging
from typing import Any

from arq import Retry, cron
from arq.worker import Worker
from redis.exceptions import LockError

from engine.automation.browser import BrowserPool
from engine.automation.totp import RedisTotpLedger
from engine.constants import (
    ARQ_MAX_TRIES,
    BUSY_DEFER_S,
    IDENTITY_LOCK_PREFIX,
    JOB_TIMEOUT_S,
    KEEP_RESULT_S,
    QUEUE_NAME,
    RECONCILE_FUNCTION,
    RELAY_EVERY_S,
)
from engine.jobs.queue import JobQueue, redis_settings
from engine.jobs.relay import relay
from engine.jobs.runner import JobRunner, JobServices
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import DirectoryEvidenceStore
from engine.storage.models import Job
from engine.storage.vault import Vault

log = logging.getLogger(__name__)


async def reconcile_job(ctx: dict[str, Any], job_id: str, attempt: int) -> str:
    """Run one job attempt, holding its identity's lock so reconciles never overlap."""
    services: JobServices = ctx["services"]
    async with services.db.session() as session:
        job = await session.get(Job, job_id)
    if job is None:
        return "missing"
    if job.identity_id is None:
        return await JobRunner(services).run(job_id, attempt)
    lock = ctx["redis"].lock(
        f"{IDENTITY_LOCK_PREFIX}{job.identity_id}", timeout=services.settings.job_lease_s
    )
    if not await lock.acquire(blocking=False):
        raise Retry(defer=BUSY_DEFER_S)
    try:
        return await JobRunner(services).run(job_id, attempt, lock=lock)
    finally:
        with contextlib.suppress(LockError):
            await lock.release()


async def relay_job(ctx: dict[str, Any]) -> str:
    """Run the relay from cron."""
    services: JobServices = ctx["services"]
    delivered, reclaimed = await relay(
        services.db, services.queue, max_attempts=services.settings.job_max_attempts
    )
    return f"delivered {delivered}, reclaimed {reclaimed}"


async def _startup(ctx: dict[str, Any]) -> None:
    """Open the database, vault, browser and queue once per worker, then relay."""
    settings: Settings = ctx["settings"]
    db = Database.from_settings(settings)
    await db.migrate()
    browsers = BrowserPool(settings)
    await browsers.start()
    services = JobServices(
        settings=settings,
        db=db,
        vault=Vault.from_path(settings.vault_key_path),
        evidence=DirectoryEvidenceStore(settings.evidence_dir),
        browsers=browsers,
        ledger=RedisTotpLedger(ctx["redis"]),
        queue=JobQueue(ctx["redis"]),
        redis=ctx["redis"],
    )
    ctx["services"] = services
    await relay_job(ctx)


async def _shutdown(ctx: dict[str, Any]) -> None:
    """Close the browser and the database."""
    services: JobServices | None = ctx.get("services")
    if services is not None:
        await services.browsers.stop()
        await services.db.dispose()


def build_worker(settings: Settings, redis_url: str, *, handle_signals: bool = True) -> Worker:
    """Return an arq worker for Usher's jobs on the Redis at redis_url."""
    every = set(range(0, 60, RELAY_EVERY_S))
    return Worker(
        functions=[_function()],
        cron_jobs=[cron(relay_job, second=every, run_at_startup=False, unique=True)],
        queue_name=QUEUE_NAME,
        redis_settings=redis_settings(redis_url),
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings},
        max_jobs=settings.worker_max_jobs,
        job_timeout=JOB_TIMEOUT_S,
        keep_result=KEEP_RESULT_S,
        max_tries=ARQ_MAX_TRIES,
        poll_delay=settings.worker_poll_delay_s,
        handle_signals=handle_signals,
    )


async def run_worker(settings: Settings, redis_url: str) -> None:
    """Run a worker until SIGINT or SIGTERM; arq binds to the loop it is built in."""
    worker = build_worker(settings, redis_url)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        log.info("worker stopping")
    finally:
        await worker.close()


def _function() -> Any:
    """Return reconcile_job registered under its constant name."""
    from arq.worker import func

    return func(reconcile_job, name=RECONCILE_FUNCTION)
