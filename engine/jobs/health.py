"""Readiness and the queue: what `/readyz`, `usher status` and the API's `/metrics` report.

Ready means the database and Redis answer and at least one worker's heartbeat is fresh:
an API whose jobs nobody runs is not ready, however well it answers. The queue's depth
comes from the database, the source of truth, never from Redis; it is read through a
reader, so a look never takes SQLite's write lock.
"""

import asyncio
import logging
from collections.abc import Awaitable

from pydantic import BaseModel, computed_field
from redis.asyncio import Redis
from sqlalchemy import func, text
from sqlmodel import col, select

from engine import metrics
from engine.constants import HEALTH_CHECK_TIMEOUT_S, HEARTBEAT_TTL_S, METRICS_READ_TIMEOUT_S
from engine.jobs.breaker import BreakerState
from engine.jobs.heartbeat import live_heartbeats
from engine.jobs.state import LIVE, PENDING
from engine.storage.db import Database
from engine.storage.models import Integration, Job, JobStatus, Lane, utcnow

log = logging.getLogger(__name__)

DATABASE, REDIS, WORKERS = "database", "redis", "workers"


class Check(BaseModel):
    """One readiness check: passed or not, and what was seen."""

    ok: bool
    detail: str


class Readiness(BaseModel):
    """Every readiness check by name; ready only when each one passed."""

    ready: bool
    checks: dict[str, Check]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> list[str]:
        """Return the names of the checks that failed."""
        return [name for name, check in self.checks.items() if not check.ok]


class LaneDepth(BaseModel):
    """The live jobs of one lane, by state."""

    lane: str
    queued: int = 0
    retrying: int = 0
    waiting: int = 0
    running: int = 0


class OldestQueued(BaseModel):
    """The job that has been queued longest: a growing age means nothing takes jobs."""

    id: str
    lane: str
    integration_id: str
    age_s: float


class QueueReport(BaseModel):
    """The queue as the database sees it."""

    lanes: list[LaneDepth]
    oldest_queued: OldestQueued | None


def _first_line(error: BaseException) -> str:
    """Return an error's first line, or its type when it says nothing."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


async def _timed(work: Awaitable[Check]) -> Check:
    """Run one check within HEALTH_CHECK_TIMEOUT_S; a hang or an error is a failed check."""
    try:
        async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_S):
            return await work
    except TimeoutError:
        return Check(ok=False, detail=f"no answer within {HEALTH_CHECK_TIMEOUT_S:g} s")
    except Exception as error:
        return Check(ok=False, detail=_first_line(error))


async def _database(db: Database) -> Check:
    """Tell whether the database answers a query, through a reader: a probe polled every few
    seconds never takes SQLite's write lock."""
    async with db.reader() as session:
        connection = await session.connection()
        await connection.execute(text("SELECT 1"))
    return Check(ok=True, detail="answers")


async def _redis(redis: Redis) -> Check:
    """Tell whether Redis answers a PING."""
    await redis.ping()
    return Check(ok=True, detail="answers")


async def _workers(redis: Redis) -> Check:
    """Tell whether at least one worker's heartbeat is fresh, naming the live workers."""
    beats = await live_heartbeats(redis)
    if not beats:
        return Check(
            ok=False,
            detail=f"no worker heartbeat within {HEARTBEAT_TTL_S} s: start `usher worker`",
        )
    now = utcnow()
    names = ", ".join(
        f"{beat.worker} ({(now - beat.beat_at).total_seconds():.0f} s ago)" for beat in beats
    )
    return Check(ok=True, detail=f"{len(beats)} alive: {names}")


async def check_readiness(db: Database, redis: Redis | None, *, no_redis: str = "") -> Readiness:
    """Run every check at once; without a Redis, say why in `no_redis`."""
    if redis is None:
        missing = Check(ok=False, detail=no_redis or "no Redis URL")
        checks = {DATABASE: await _timed(_database(db)), REDIS: missing, WORKERS: missing}
    else:
        database, reached, workers = await asyncio.gather(
            _timed(_database(db)), _timed(_redis(redis)), _timed(_workers(redis))
        )
        if not reached.ok:
            workers = Check(ok=False, detail="unknown: Redis does not answer")
        checks = {DATABASE: database, REDIS: reached, WORKERS: workers}
    return Readiness(ready=all(c.ok for c in checks.values()), checks=checks)


async def queue_report(db: Database) -> QueueReport:
    """Count the live jobs of each lane by state and find the oldest queued one."""
    depth = {lane: LaneDepth(lane=lane) for lane in Lane}
    async with db.reader() as session:
        counts = await session.exec(
            select(Job.lane, Job.status, func.count())
            .where(col(Job.status).in_(LIVE))
            .group_by(col(Job.lane), col(Job.status))
        )
        for lane, status, count in counts:
            setattr(depth.setdefault(lane, LaneDepth(lane=lane)), status, count)
        oldest = (
            await session.exec(
                select(Job)
                .where(Job.status == JobStatus.queued)
                .order_by(col(Job.created_at), col(Job.id))
                .limit(1)
            )
        ).first()
    report = QueueReport(lanes=list(depth.values()), oldest_queued=None)
    if oldest is not None:
        report.oldest_queued = OldestQueued(
            id=oldest.id,
            lane=oldest.lane,
            integration_id=oldest.integration_id,
            age_s=round((utcnow() - oldest.created_at).total_seconds(), 1),
        )
    return report


async def database_view(db: Database) -> metrics.DatabaseView:
    """Read what the database alone knows for /metrics: the queue and every breaker."""
    report = await queue_report(db)
    async with db.reader() as session:
        rows = await session.exec(
            select(Integration.id, Integration.app, Integration.breaker).order_by(
                col(Integration.id)
            )
        )
        breakers = [(integration_id, app, breaker) for integration_id, app, breaker in rows]
    jobs = {
        (lane.lane, job_state): getattr(lane, job_state, 0)
        for lane in report.lanes
        for job_state in LIVE
    }
    pending = {
        lane.lane: sum(getattr(lane, job_state, 0) for job_state in PENDING)
        for lane in report.lanes
    }
    oldest = report.oldest_queued.age_s if report.oldest_queued is not None else 0.0
    return metrics.DatabaseView(
        jobs=jobs,
        pending=pending,
        oldest_queued_s=max(oldest, 0.0),
        breakers=breakers,
        breaker_states=list(BreakerState),
    )


async def scrape(db: Database, accept: str | None) -> tuple[bytes, str]:
    """Return the API process's metrics with the database's; without them if it is slow."""
    try:
        async with asyncio.timeout(METRICS_READ_TIMEOUT_S):
            view = await database_view(db)
    except Exception as error:
        log.warning("metrics: the database could not be read: %s", _first_line(error))
        view = None
    return metrics.exposition(view, accept)
