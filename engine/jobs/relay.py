"""The relay: deliver queued jobs Redis lost, and reclaim jobs whose worker stopped."""

import logging

from sqlmodel import col, select

from engine.jobs.queue import JobQueue
from engine.storage.db import Database
from engine.storage.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)


async def relay(db: Database, queue: JobQueue, *, max_attempts: int) -> tuple[int, int]:
    """Re-enqueue every queued job and reclaim lapsed leases; return (delivered, reclaimed).

    arq de-duplicates by `{job}:{attempt}`, so delivering a job Redis still holds is a no-op.
    """
    reclaimed: list[Job] = []
    async with db.session() as session:
        lapsed = (
            await session.exec(
                select(Job).where(Job.status == JobStatus.running, col(Job.lease_until) < utcnow())
            )
        ).all()
        for job in lapsed:
            if job.attempt >= max_attempts:
                job.status, job.finished_at = JobStatus.failed, utcnow()
                job.error = "the worker running this job stopped renewing its lease"
            else:
                job.status, job.attempt = JobStatus.queued, job.attempt + 1
                job.error = "reclaimed from a worker that stopped"
                reclaimed.append(job)
            job.lease_until = None
            session.add(job)
        await session.commit()
        queued = (await session.exec(select(Job).where(Job.status == JobStatus.queued))).all()
    delivered = 0
    for job in queued:
        delivered += await queue.enqueue(job)
    if lapsed:
        log.warning("relay reclaimed %d job(s) whose lease lapsed", len(lapsed))
    return delivered, len(reclaimed)
