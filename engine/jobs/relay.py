"""The relay: reclaim jobs whose worker stopped, and deliver due jobs Redis does not hold."""

import logging

from engine.jobs import state
from engine.jobs.queue import JobQueue
from engine.storage.db import Database
from engine.storage.models import JobStatus

log = logging.getLogger(__name__)


async def relay(db: Database, queue: JobQueue, *, max_attempts: int) -> tuple[int, int]:
    """Reclaim lapsed leases and deliver every due pending job; return (delivered, reclaimed).

    One bad row is logged and skipped, never the end of the pass. arq de-duplicates by
    `{job}:{attempt}` while a delivery is queued or running, so delivering again is a no-op.
    """
    reclaimed = 0
    for job_id in await state.lapsed_jobs(db):
        try:
            status = await state.reclaim(db, job_id, max_attempts=max_attempts)
        except Exception:
            log.exception("relay could not reclaim job %s; it tries again next pass", job_id)
            continue
        if status is not None:
            log.warning("relay reclaimed job %s from a stopped worker: %s", job_id, status)
            reclaimed += status == JobStatus.retrying
    delivered = 0
    for job in await state.due_jobs(db):
        delivered += await queue.enqueue(job)
    return delivered, reclaimed
