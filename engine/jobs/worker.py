"""The arq worker: reconcile jobs in its slots, and the relay on its own timer beside them."""

import asyncio
import contextlib
import logging
from typing import Any

from arq.worker import Worker, func
from redis.exceptions import RedisError

from engine.automation.browser import BrowserPool
from engine.automation.totp import RedisTotpLedger
from engine.constants import (
    ARQ_MAX_TRIES,
    JOB_TIMEOUT_S,
    KEEP_RESULT_S,
    QUEUE_NAME,
    RECONCILE_FUNCTION,
)
from engine.jobs.maintenance import maintain
from engine.jobs.queue import JobQueue, redis_settings, wait_for_redis
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


class UsherWorker(Worker):
    """arq's worker, kept alive through Redis outages with its jobs and browser.

    arq's `Worker.main()` connects, runs `on_startup`, then polls; any Redis error in a
    poll step (the queue read, `start_jobs`' pipeline, the health beat, or a job task's
    error that `_poll_iteration` re-raises with `t.result()`) ends `main()`, and with it
    the worker process. Here `main()` runs arq's in a loop instead: on a Redis error it
    waits for Redis with a capped, jittered back-off, gives back the job slots the broken
    poll took, and runs arq's `main()` again on the same pool. Jobs are their own asyncio
    tasks and go on meanwhile (the database, not Redis, records their result); the relay
    re-delivers what Redis lost; `on_startup` runs once and `on_shutdown` only at the end.
    """

    def __init__(self, *args: Any, redis_url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redis_url = redis_url

    async def main(self) -> None:
        """Run arq's main loop until it returns or the worker is stopped, whatever Redis does."""
        while True:
            await wait_for_redis(self.redis_url)
            await self._settle_slots()
            try:
                await super().main()
                return
            except RedisError as error:
                running = sum(not task.done() for task in self.tasks.values())
                log.warning(
                    "lost Redis (%s): %d running job(s) go on; polling resumes when it answers",
                    error,
                    running,
                )

    async def _settle_slots(self) -> None:
        """Make arq's job slots match its running job tasks after a poll broke off.

        `start_jobs` counts a slot (`job_counter`, `sem`) before its Redis pipeline; a Redis
        error there leaves the slot taken with no job in it, and with `max_jobs` such slots
        the worker would never take a job again. A job task that ended on a Redis error
        (arq records its end in Redis) is dropped here, as arq would, and logged once.
        """
        await asyncio.sleep(0)  # finished jobs' done-callbacks give their slots back first
        for job_id, task in list(self.tasks.items()):
            if task.done() and not task.cancelled() and isinstance(task.exception(), RedisError):
                del self.tasks[job_id]
                log.warning("arq could not record the end of %s: %s", job_id, task.exception())
        running = sum(not task.done() for task in self.tasks.values())
        lost = self.job_counter - running
        for _ in range(lost):
            self.job_counter -= 1
            self.sem.release()
        if lost > 0:
            log.warning("gave back %d job slot(s) a broken poll had taken", lost)

    async def close(self) -> None:
        """Close as arq does; with Redis away, still let every job end and run `on_shutdown`.

        arq's `close()` gathers the job tasks (raising the first Redis error of one that
        could not record its end) and deletes its health key before `on_shutdown`: without
        Redis it would skip `on_shutdown` and leave the browser to the process's end.
        """
        try:
            await super().close()
        except RedisError as error:
            log.warning("Redis unreachable while stopping (%s); closing without it", error)
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            if self.on_shutdown is not None:
                await self.on_shutdown(self.ctx)
            with contextlib.suppress(RedisError, OSError):
                await self.pool.aclose()


async def _startup(ctx: dict[str, Any]) -> None:
    """Open the database, vault, browser and queue once per worker, then start the relay.

    arq's `main()` runs again after a Redis outage (`UsherWorker.main`); the worker's
    services, browser and relay live on, so a second call does nothing.
    """
    if "services" in ctx:
        return
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
    """Stop the relay, then close the browser and the database; once, however often called."""
    maintenance: asyncio.Task[None] | None = ctx.pop("maintenance", None)
    if maintenance is not None:
        maintenance.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await maintenance
    services: JobServices | None = ctx.pop("services", None)
    if services is not None:
        await services.browsers.stop()
        await services.db.dispose()


def build_worker(settings: Settings, redis_url: str, *, handle_signals: bool = True) -> UsherWorker:
    """Return an arq worker for Usher's jobs on the Redis at redis_url."""
    return UsherWorker(
        redis_url=redis_url,
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
