"""A job's live events over Redis pub/sub: best-effort news, never the source of truth.

The worker announces each recorded step and the job's end; a page that shows the job
listens and reloads what changed from the database. A lost event only delays a page.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from engine.constants import EVENT_PUBLISH_TIMEOUT_S, JOB_EVENTS_PREFIX

log = logging.getLogger(__name__)

SUBSCRIBED = "subscribed"
"""The first thing `listen` yields: from now on no event is missed."""
FINAL = "end"
"""The kind of the last event a job sends: its attempt ended (any outcome)."""


def channel(job_id: str) -> str:
    """Return the pub/sub channel of a job."""
    return f"{JOB_EVENTS_PREFIX}{job_id}"


async def publish(redis: Redis, job_id: str, kind: str, **detail: object) -> None:
    """Announce a job event; a failing or slow Redis drops it and never fails the job."""
    message = json.dumps({"job": job_id, "kind": kind, **detail})
    try:
        await asyncio.wait_for(redis.publish(channel(job_id), message), EVENT_PUBLISH_TIMEOUT_S)
    except Exception as error:
        log.debug("job %s: event %s not published: %s", job_id, kind, error)


async def listen(redis: Redis, job_id: str, *, idle_s: float) -> AsyncIterator[dict[str, object]]:
    """Yield `{"kind": "subscribed"}` once listening, then each event of the job as it comes,
    and an empty dict after each `idle_s` of silence.
    """
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(channel(job_id))
        yield {"kind": SUBSCRIBED}
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=idle_s)
            if message is None:
                yield {}
                continue
            try:
                yield json.loads(message["data"])
            except (TypeError, ValueError):
                continue
    finally:
        await pubsub.aclose()
