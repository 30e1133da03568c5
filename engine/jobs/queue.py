"""Deliver committed jobs to arq; Redis only delivers, the database decides."""

import logging
from collections.abc import Iterable

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.exceptions import RedisError

from engine.constants import QUEUE_NAME, RECONCILE_FUNCTION
from engine.storage.models import Job

log = logging.getLogger(__name__)


class QueueError(Exception):
    """No Redis URL was given where a real Redis is required."""


def redis_settings(url: str) -> RedisSettings:
    """Return arq's settings for a redis:// or unix:// URL."""
    return RedisSettings.from_dsn(url)


def arq_job_id(job: Job) -> str:
    """Return the arq id of a job attempt: arq keeps results under it, so attempts differ."""
    return f"{job.id}:{job.attempt}"


class JobQueue:
    """Enqueue reconcile jobs after their rows are committed."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    @classmethod
    async def connect(cls, url: str) -> "JobQueue":
        """Open a pool to the Redis at url."""
        return cls(await create_pool(redis_settings(url), default_queue_name=QUEUE_NAME))

    async def enqueue(self, job: Job, *, defer_s: float | None = None) -> bool:
        """Enqueue one job attempt; False when Redis failed, and the relay will deliver it."""
        try:
            await self.redis.enqueue_job(
                RECONCILE_FUNCTION,
                job.id,
                job.attempt,
                _job_id=arq_job_id(job),
                _queue_name=QUEUE_NAME,
                _defer_by=defer_s,
            )
        except (RedisError, OSError) as error:
            log.warning("job %s not enqueued, the relay will: %s", job.id, error)
            return False
        return True

    async def enqueue_all(self, jobs: Iterable[Job]) -> None:
        """Enqueue every job a request queued."""
        for job in jobs:
            await self.enqueue(job)

    async def close(self) -> None:
        """Close the pool."""
        await self.redis.aclose()
