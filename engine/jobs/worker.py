"""The arq worker: reconcile jobs in its slots, and the relay on its own timer beside them."""

import asyncio
import contextlib
import logging
from typing import Any

from arq.worker import Worker, func

from engine.automation.browser import BrowserPool
from engine.automation.totp import RedisTotpLedger
from engine.constants import (
    ARQ_MAX_TRIES,
    JOB_TIMEOUT_S,
    KEEP_RESULT_S,
    QUEUE_NAME,
    RECONCILE_FUNCTION,
)
from engine.jobs.queue import JobQueue, redis_settings
from engine.jobs.relay import relay
from engine.jobs.runner import JobRunner, JobServices
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import DirectoryEvidenceStore
from engine.storage.vault import Vault

log = logging.getLogger(__name__)


async def reconcile_job(ctx: dict[str, Any], job_id: str, attempt: int) -> str:
    """Run one job attempt; the database's claim keeps reconciles of an identity apart."""
    services: JobServices = ctx["services"]
    return await JobRunner(services).run(job_id, attempt)


async def relay_once(services: JobServices) -> tuple[int, int]:
    """Run one relay pass with the worker's services."""
    return await relay(services.db, services.queue, max_attempts=services.settings.job_max_attempts)


async def maintain(services: JobServices) -> None:
    """Run the relay every `relay_every_s`, outside the job slots, until cancelled.

    A job slot may be busy for minutes; the relay must not wait behind it, or a dead
    worker's jobs come back late. A failed pass (Redis or the database away) is logged
    and the next one runs on time.
    """
    while True:
        try:
            delivered, reclaimed = await relay_once(services)
            if reclaimed:
                log.info("relay delivered %d, reclaimed %d", delivered, reclaimed)
        except Exception:
            log.exception(
                "relay pass failed; the next one runs in %ss", services.settings.relay_every_s
            )
        await asyncio.sleep(services.settings.relay_every_s)


async def _startup(ctx: dict[str, Any]) -> None:
    """Open the database, vault, browser and queue once per worker, then start the relay."""
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
    ctx["maintenance"] = asyncio.create_task(maintain(services))


async def _shutdown(ctx: dict[str, Any]) -> None:
    """Stop the relay, then close the browser and the database."""
    maintenance: asyncio.Task[None] | None = ctx.get("maintenance")
    if maintenance is not None:
        maintenance.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await maintenance
    services: JobServices | None = ctx.get("services")
    if services is not None:
        await services.browsers.stop()
        await services.db.dispose()


def build_worker(settings: Settings, redis_url: str, *, handle_signals: bool = True) -> Worker:
    """Return an arq worker for Usher's jobs on the Redis at redis_url."""
    return Worker(
        functions=[func(reconcile_job, name=RECONCILE_FUNCTION)],
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
