"""Worker heartbeats: a Redis key per worker process with a TTL, refreshed on its own timer.

A worker that stops cleanly deletes its key; one that dies lets it expire. Readiness counts
the keys that still exist, so "a worker is alive" means one refreshed within the TTL.
"""

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from engine.constants import HEARTBEAT_EVERY_S, HEARTBEAT_PREFIX, HEARTBEAT_TTL_S
from engine.jobs.queue import REDIS_DOWN
from engine.storage.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Heartbeat:
    """One worker process's last beat."""

    worker: str
    started_at: datetime
    beat_at: datetime


def heartbeat_key(worker: str) -> str:
    """Return the Redis key of one worker process's heartbeat."""
    return f"{HEARTBEAT_PREFIX}{worker}"


async def beat_once(redis: Redis, worker: str, started_at: datetime) -> None:
    """Write the worker's heartbeat with its TTL; a dead worker's expires on its own."""
    record = {
        "worker": worker,
        "started_at": started_at.isoformat(),
        "beat_at": utcnow().isoformat(),
    }
    await redis.set(heartbeat_key(worker), json.dumps(record), ex=HEARTBEAT_TTL_S)


async def beat(redis: Redis, worker: str) -> None:
    """Refresh the heartbeat every HEARTBEAT_EVERY_S until cancelled, whatever Redis does.

    A failed beat is logged once per outage and the timer goes on, as the rest of the
    worker does; cancelling it (a clean stop) deletes the key so readiness drops at once.
    """
    started_at = utcnow()
    failing = False
    try:
        while True:
            try:
                await beat_once(redis, worker, started_at)
            except REDIS_DOWN as error:
                if not failing:
                    log.warning("heartbeat not written, Redis unreachable: %s", error)
                failing = True
            else:
                if failing:
                    log.info("heartbeat written again: Redis answers")
                failing = False
            await asyncio.sleep(HEARTBEAT_EVERY_S)
    finally:
        with contextlib.suppress(*REDIS_DOWN):
            await redis.delete(heartbeat_key(worker))


async def live_heartbeats(redis: Redis) -> list[Heartbeat]:
    """Return every worker heartbeat that has not expired, oldest beat first."""
    found: list[Heartbeat] = []
    async for key in redis.scan_iter(match=f"{HEARTBEAT_PREFIX}*"):
        raw = await redis.get(key)
        if raw is None:
            continue  # expired between the scan and the read
        record = json.loads(raw)
        found.append(
            Heartbeat(
                worker=record["worker"],
                started_at=datetime.fromisoformat(record["started_at"]),
                beat_at=datetime.fromisoformat(record["beat_at"]),
            )
        )
    return sorted(found, key=lambda heartbeat: heartbeat.beat_at)
