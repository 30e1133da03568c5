"""Each worker's maintenance, on its own timer beside the job slots: relay, sweep, probes,
the audit pass (anchor the chain's head outside the database, prune old evidence), the
alerts (send the due webhook deliveries), the expiry of direct assignments and the
inventories (each integration's import, then a daily one) it queues.

A job slot may be busy for minutes; none of this may wait behind it, or a dead worker's
jobs come back late and identities left behind stay behind. A failed pass (Redis or the
database away) is logged and the next one runs on time.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable

from engine.constants import ASSIGNMENT_EXPIRY_BATCH, PRUNE_BATCHES_PER_PASS, SWEEP_BATCH
from engine.jobs.alerts import deliver_due
from engine.jobs.assignments import expire_due
from engine.jobs.inventory import schedule_due
from engine.jobs.probe import probe_due
from engine.jobs.relay import relay
from engine.jobs.runner import JobServices
from engine.jobs.sweep import sweep
from engine.storage.anchors import anchor_head
from engine.storage.verify import prune_evidence

log = logging.getLogger(__name__)


async def _guarded(what: str, work: Awaitable[object]) -> None:
    """Run one maintenance pass; a failure is logged, never the end of maintenance."""
    try:
        await work
    except Exception:
        log.exception("%s pass failed; the next one runs on time", what)


async def relay_once(services: JobServices) -> tuple[int, int]:
    """Run one relay pass with the worker's services."""
    return await relay(services.db, services.queue, max_attempts=services.settings.job_max_attempts)


async def sweep_once(services: JobServices) -> int:
    """Run one sweep pass with the worker's services."""
    settings = services.settings
    return await sweep(
        services.db,
        services.queue,
        base_s=settings.comeback_base_s,
        cap_s=settings.comeback_cap_s,
        limit=SWEEP_BATCH,
    )


async def audit_once(services: JobServices) -> None:
    """Prune evidence past its retention, then anchor the chain's head in the data dir."""
    settings = services.settings
    if settings.evidence_keep_days:
        await prune_evidence(
            services.db,
            services.evidence,
            keep_days=settings.evidence_keep_days,
            batches=PRUNE_BATCHES_PER_PASS,
        )
    await anchor_head(services.db, settings)


async def expiry_once(services: JobServices) -> int:
    """End the assignments past their expiry and deliver their identities' jobs."""
    jobs = await expire_due(services.db, limit=ASSIGNMENT_EXPIRY_BATCH)
    await services.queue.enqueue_all(jobs)
    return len(jobs)


async def alerts_once(services: JobServices) -> int:
    """Send the due webhook deliveries with the worker's services."""
    return await deliver_due(services.db, services.vault, services.settings)


async def inventory_once(services: JobServices) -> int:
    """Queue the due inventories (daily, or an integration's import) and deliver them.

    Queuing is a compare-and-set in the database: however many workers pass, each
    integration's run is queued once; the run itself takes a job slot like any job.
    """
    jobs = await schedule_due(services.db, services.settings, services.vault)
    await services.queue.enqueue_all(jobs)
    return len(jobs)


async def maintain(services: JobServices) -> None:
    """Relay, end expired assignments and queue due inventories every `relay_every_s`, sweep
    every `sweep_every_s`, probe cooled breakers, anchor and prune every `audit_every_s`,
    send due alerts.

    A probe signs in with a browser and an alert waits on its receiver, for seconds, so
    each runs as its own task and the relay stays on time; a new pass of either starts only
    when its last one ended.
    """
    settings = services.settings
    next_sweep = time.monotonic() + settings.sweep_every_s
    next_audit = time.monotonic()
    probing: asyncio.Task[None] | None = None
    alerting: asyncio.Task[None] | None = None
    try:
        while True:
            await _guarded("relay", relay_once(services))
            await _guarded("expiry", expiry_once(services))
            if time.monotonic() >= next_sweep:
                await _guarded("sweep", sweep_once(services))
                next_sweep = time.monotonic() + settings.sweep_every_s
            if time.monotonic() >= next_audit:
                await _guarded("audit", audit_once(services))
                next_audit = time.monotonic() + settings.audit_every_s
            await _guarded("inventory", inventory_once(services))
            if probing is None or probing.done():
                probing = asyncio.create_task(_guarded("probe", probe_due(services)))
            if alerting is None or alerting.done():
                alerting = asyncio.create_task(_guarded("alerts", alerts_once(services)))
            await asyncio.sleep(settings.relay_every_s)
    finally:
        for task in (probing, alerting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
