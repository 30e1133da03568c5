"""Per-integration limits across every worker on every machine: concurrency and pace.

An app instance answers only so many sessions and actions at once. The gate holds one Redis
lease per running job of an integration in a sorted set scored by expiry, so a killed
worker's slot frees itself when its lease lapses; the pace counts actions per minute in a
window key. A job that finds the gate full does not take a job slot or spin: it is held in
the database until a slot is likely free and given back to the queue.
"""

import time

from redis.asyncio import Redis

from engine.constants import GATE_PREFIX, PACE_PREFIX

ACQUIRE = """
local key, member, expiry = KEYS[1], ARGV[1], ARGV[3]
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, member) or redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, expiry, member)
  redis.call('PEXPIRE', key, math.ceil((tonumber(expiry) - now) * 1000) + 1000)
  return 1
end
return 0
"""
"""Drop lapsed leases, then take or refresh this job's lease if a slot is free: atomically."""


class Gate:
    """The concurrency and pace limits of one integration, shared through Redis."""

    def __init__(self, redis: Redis, integration_id: str, *, lease_s: float) -> None:
        self.redis = redis
        self.key = f"{GATE_PREFIX}{integration_id}"
        self.pace_key = f"{PACE_PREFIX}{integration_id}"
        self.lease_s = lease_s

    async def enter(self, job_id: str, limit: int) -> bool:
        """Take a running slot for a job, or refresh the one it holds; False when all are taken."""
        now = time.time()
        taken = await self.redis.eval(  # type: ignore[misc]
            ACQUIRE, 1, self.key, job_id, str(now), str(now + self.lease_s), str(limit)
        )
        return bool(taken)

    async def renew(self, job_id: str) -> None:
        """Extend a held slot's lease while its job runs."""
        await self.redis.zadd(self.key, {job_id: time.time() + self.lease_s}, xx=True)

    async def leave(self, job_id: str) -> None:
        """Give a slot back."""
        await self.redis.zrem(self.key, job_id)

    async def running(self) -> int:
        """Count the slots held now."""
        await self.redis.zremrangebyscore(self.key, "-inf", time.time())
        return int(await self.redis.zcard(self.key))

    async def pace(self, per_minute: int) -> float:
        """Count one action against this minute's budget; return how long to wait first.

        0 when the action may go now; otherwise the seconds until the next minute's window,
        which the caller waits before asking again.
        """
        now = time.time()
        window = int(now // 60)
        key = f"{self.pace_key}:{window}"
        count = await self.redis.incr(key)
        if count == 1:
            await self.redis.expire(key, 120)
        if count <= per_minute:
            return 0.0
        return (window + 1) * 60 - now
