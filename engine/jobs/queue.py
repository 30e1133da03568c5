"""Deliver committed jobs to arq; Redis only delivers, the database decides."""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.constants import (
    INVENTORY_FUNCTION,
    QUEUE_NAME,
    RECONCILE_FUNCTION,
    REDIS_PROBE_TIMEOUT_S,
    REDIS_RECONNECT_BACKOFF_S,
    REDIS_RECONNECT_JITTER,
    URGENT_QUEUE_NAME,
)
from engine.storage.models import Job, JobKind, Lane

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisError, OSError)
"""What redis-py raises when Redis is unreachable or went away mid-command."""


class QueueError(Exception):
    """No Redis URL was given where a real Redis is required."""


def redis_settings(url: str) -> RedisSettings:
    """Return arq's settings for a redis:// or unix:// URL."""
    return RedisSettings.from_dsn(url)


def reconnect_delay_s(tries: int) -> float:
    """Return the jittered wait after `tries` failed tries to reach Redis: growing, capped."""
    base = REDIS_RECONNECT_BACKOFF_S[min(tries, len(REDIS_RECONNECT_BACKOFF_S)) - 1]
    return base * random.uniform(1 - REDIS_RECONNECT_JITTER, 1 + REDIS_RECONNECT_JITTER)


async def wait_for_redis(
    url: str, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> int:
    """Return once the Redis at url answers a PING; return how many tries failed before.

    Each failed try logs one line and waits a capped, jittered back-off: a worker started
    or cut off while Redis is down waits for it instead of exiting.
    """
    probe = Redis.from_url(
        url, socket_connect_timeout=REDIS_PROBE_TIMEOUT_S, socket_timeout=REDIS_PROBE_TIMEOUT_S
    )
    failed = 0
    try:
        while True:
            try:
                await probe.ping()
            except REDIS_DOWN as error:
                failed += 1
                delay = reconnect_delay_s(failed)
                log.warning("Redis unreachable (%s); trying again in %.1fs", error, delay)
                await sleep(delay)
                continue
            if failed:
                log.info("Redis answers again after %d failed tries", failed)
            return failed
    finally:
        await probe.aclose()


LANE_QUEUES: dict[str, str] = {Lane.normal: QUEUE_NAME, Lane.urgent: URGENT_QUEUE_NAME}
"""The arq queue each lane's jobs go to."""


def arq_job_id(job: Job) -> str:
    """Return the arq id of a job attempt in its lane: arq de-duplicates by it.

    An urgent delivery has its own id, so a job that became urgent while a normal delivery
    waits is delivered on the urgent lane too; whichever comes first claims the attempt.
    """
    suffix = ":urgent" if job.lane == Lane.urgent else ""
    return f"{job.id}:{job.attempt}{suffix}"


class JobQueue:
    """Enqueue reconcile jobs after their rows are committed."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self.failing = False

    @classmethod
    async def connect(cls, url: str) -> "JobQueue":
        """Open a pool to the Redis at url."""
        return cls(await create_pool(redis_settings(url), default_queue_name=QUEUE_NAME))

    async def enqueue(self, job: Job, *, defer_s: float | None = None) -> bool:
        """Enqueue one job attempt; False when Redis failed, and the relay will deliver it.

        While Redis stays away, only the first failure is a warning: every request and
        relay pass tries again, and a line per job would bury the log.
        """
        try:
            await self.redis.enqueue_job(
                INVENTORY_FUNCTION if job.kind == JobKind.inventory else RECONCILE_FUNCTION,
                job.id,
                job.attempt,
                _job_id=arq_job_id(job),
                _queue_name=LANE_QUEUES.get(job.lane, QUEUE_NAME),
                _defer_by=defer_s,
            )
        except REDIS_DOWN as error:
            level = logging.DEBUG if self.failing else logging.WARNING
            log.log(level, "job %s not enqueued, the relay will: %s", job.id, error)
            self.failing = True
            return False
        if self.failing:
            log.info("enqueueing again: Redis answers")
            self.failing = False
        return True

    async def enqueue_all(self, jobs: Iterable[Job]) -> None:
        """Enqueue every job a request queued."""
        for job in jobs:
            await self.enqueue(job)

    async def close(self) -> None:
        """Close the pool."""
        await self.redis.aclose()
