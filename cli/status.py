"""`usher status`: readiness as `/readyz` sees it, with the queue from the database."""

import asyncio

from redis.asyncio import Redis

from cli.embedded import running_owner
from engine.constants import HEALTH_CHECK_TIMEOUT_S
from engine.jobs.health import QueueReport, Readiness, check_readiness, queue_report
from engine.settings import Settings
from engine.storage.db import Database


def status_redis_url(settings: Settings) -> str | None:
    """Return the Redis to check: USHER_REDIS_URL, else that of the `usher up` on the data dir."""
    if settings.redis_url:
        return settings.redis_url
    owner = running_owner(settings.data_dir)
    return owner.url if owner is not None else None


async def gather_status(settings: Settings) -> tuple[Readiness, QueueReport | None, str]:
    """Run the readiness checks and read the queue; a queue that cannot be read says why."""
    url = status_redis_url(settings)
    no_redis = (
        f"no USHER_REDIS_URL and no `usher up` runs on {settings.data_dir}" if url is None else ""
    )
    redis = (
        Redis.from_url(
            url,
            socket_connect_timeout=HEALTH_CHECK_TIMEOUT_S,
            socket_timeout=HEALTH_CHECK_TIMEOUT_S,
        )
        if url
        else None
    )
    db = Database.from_settings(settings)
    try:
        readiness = await check_readiness(db, redis, no_redis=no_redis)
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_S):
                return readiness, await queue_report(db), ""
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            return readiness, None, f"queue unknown: {reason}"
    finally:
        if redis is not None:
            await redis.aclose()
        await db.dispose()


def render_status(readiness: Readiness, queue: QueueReport | None, problem: str) -> str:
    """Render readiness and the queue for a terminal."""
    lines = ["ready" if readiness.ready else f"NOT READY: {', '.join(readiness.failed)} failed"]
    for name, check in readiness.checks.items():
        lines.append(f"  {name:<9} {'ok' if check.ok else 'FAILED':<7} {check.detail}")
    lines.append("queue (from the database)")
    if queue is None:
        lines.append(f"  {problem}")
        return "\n".join(lines)
    for lane in queue.lanes:
        lines.append(
            f"  {lane.lane:<9} queued {lane.queued}, retrying {lane.retrying},"
            f" waiting {lane.waiting}, running {lane.running}"
        )
    oldest = queue.oldest_queued
    if oldest is None:
        lines.append("  oldest queued job: none")
    else:
        lines.append(
            f"  oldest queued job: {oldest.id} ({oldest.lane} lane, integration"
            f" {oldest.integration_id}), queued {oldest.age_s:.0f} s ago"
        )
    return "\n".join(lines)
