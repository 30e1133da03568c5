"""The arq workers of a process: one per lane, sharing a browser, and maintenance beside them."""

import asyncio
import contextlib
import logging
import signal
from typing import Any

from arq.worker import Worker, func
from redis.exceptions import RedisError

from engine.automation.browser import BrowserPool
from engine.automation.totp import RedisTotpLedger
from engine.constants import (
    ARQ_MAX_TRIES,
    INVENTORY_FUNCTION,
    INVENTORY_TIMEOUT_S,
    JOB_TIMEOUT_S,
    KEEP_RESULT_S,
    RECONCILE_FUNCTION,
)
from engine.jobs.heartbeat import beat
from engine.jobs.maintenance import maintain
from engine.jobs.queue import LANE_QUEUES, JobQueue, redis_settings, wait_for_redis
from engine.jobs.runner import JobRunner, JobServices
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import evidence_store
from engine.storage.models import Lane
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


class SharedServices:
    """One browser, database, maintenance timer and heartbeat for a process's workers.

    Each `usher worker` runs two arq workers, one per lane: the normal one with
    `worker_max_jobs` slots and the urgent one with `worker_urgent_slots` reserved for jobs
    that remove access, so a deactivation never waits behind a backlog of creates (arq has
    no priorities; a second queue with its own slots is its way). Both share these.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: JobServices | None = None
        self.maintenance: asyncio.Task[None] | None = None
        self.heartbeat: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def startup(self, ctx: dict[str, Any]) -> None:
        """Give a worker the shared services, opening them on the first call.

        arq's `main()` runs again after a Redis outage (`UsherWorker.main`); the services,
        the browser and the relay live on, so a later call only hands them over.
        """
        async with self._lock:
            if self.services is None:
                self.services = await _open_services(self.settings, ctx["redis"])
                self.maintenance = asyncio.create_task(maintain(self.services))
                self.heartbeat = asyncio.create_task(
                    beat(self.services.redis, self.services.worker_name)
                )
        ctx["services"] = self.services

    async def close(self) -> None:
        """Stop the heartbeat and the maintenance timer, then close the browser and database."""
        tasks = [t for t in (self.heartbeat, self.maintenance) if t is not None]
        self.heartbeat = self.maintenance = None
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        services, self.services = self.services, None
        if services is not None:
            await services.browsers.stop()
            await services.db.dispose()


async def _open_services(settings: Settings, redis: Any) -> JobServices:
    """Open the database, vault, browser and queue a worker's jobs use."""
    db = Database.from_settings(settings)
    await db.migrate()
    browsers = BrowserPool(settings)
    await browsers.start()
    return JobServices(
        settings=settings,
        db=db,
        vault=Vault.from_path(settings.vault_key_path),
        evidence=evidence_store(settings, db),
        browsers=browsers,
        ledger=RedisTotpLedger(redis),
        queue=JobQueue(redis),
        redis=redis,
    )


def build_worker(
    settings: Settings, redis_url: str, shared: SharedServices, *, lane: Lane
) -> UsherWorker:
    """Return an arq worker for one lane's jobs on the Redis at redis_url."""
    slots = settings.worker_urgent_slots if lane == Lane.urgent else settings.worker_max_jobs
    return UsherWorker(
        redis_url=redis_url,
        functions=[
            func(reconcile_job, name=RECONCILE_FUNCTION),
            func(reconcile_job, name=INVENTORY_FUNCTION, timeout=INVENTORY_TIMEOUT_S),
        ],
        queue_name=LANE_QUEUES[lane],
        redis_settings=redis_settings(redis_url),
        on_startup=shared.startup,
        ctx={"settings": settings},
        max_jobs=slots,
        job_timeout=JOB_TIMEOUT_S,
        keep_result=KEEP_RESULT_S,
        max_tries=ARQ_MAX_TRIES,
        poll_delay=settings.worker_poll_delay_s,
        handle_signals=False,
    )


async def run_workers(settings: Settings, redis_url: str, *, handle_signals: bool) -> None:
    """Run both lanes' workers until cancelled, or until SIGINT or SIGTERM if asked to."""
    shared = SharedServices(settings)
    workers = [build_worker(settings, redis_url, shared, lane=lane) for lane in Lane]
    if handle_signals:
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stop, _stop_all, workers, stop)
    try:
        await asyncio.gather(*(worker.async_run() for worker in workers))
    except asyncio.CancelledError:
        log.info("worker stopping")
    finally:
        for worker in workers:
            await worker.close()
        await shared.close()


def _stop_all(workers: list[UsherWorker], stop: signal.Signals) -> None:
    """Stop every lane's worker on a signal, as arq does for one."""
    for worker in workers:
        worker.handle_sig(stop)


async def run_worker(settings: Settings, redis_url: str) -> None:
    """Run a worker process until SIGINT or SIGTERM; arq binds to the loop it is built in."""
    await run_workers(settings, redis_url, handle_signals=True)
