"""Per-integration limits across every worker on every machine: concurrency and pace.

An app instance answers only so many sessions and actions at once. The gate holds one Redis
lease per running job of an integration in a sorted set scored by expiry, so a killed
worker's slot frees itself when its lease lapses; the pace counts actions per minute in a
window key. A job that finds the gate full does not take a job slot or spin: it is held in
the database until a slot is likely free and given back to the queue.
"""

import time

from redis.asyncio import Redis

from engine.constants import GATE_PREFIX, GATE_URGENT_WAIT_S, GATE_WAITERS_PREFIX, PACE_PREFIX

ACQUIRE = """
local key, waiters = KEYS[1], KEYS[2]
local member, now, expiry = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local limit, urgent, wait_until = tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
redis.call('ZREMRANGEBYSCORE', waiters, '-inf', now)
local held = redis.call('ZSCORE', key, member)
local free = redis.call('ZCARD', key) < limit
local first = urgent or redis.call('ZCARD', waiters) == 0
if held or (free and first) then
  redis.call('ZADD', key, expiry, member)
  redis.call('PEXPIRE', key, math.ceil((tonumber(expiry) - now) * 1000) + 1000)
  redis.call('ZREM', waiters, member)
  return 1
end
if urgent then
  redis.call('ZADD', waiters, wait_until, member)
  redis.call('PEXPIRE', waiters, math.ceil((tonumber(wait_until) - now) * 1000) + 1000)
end
return 0
"""
"""Drop lapsed leases and waits, then take or refresh this job's lease if a slot is free and
no urgent job waits for it (an urgent job may take it); an urgent job that finds none free
claims the next one. Atomically, across every worker."""


class Gate:
    """The concurrency and pace limits of one integration, shared through Redis."""

    def __init__(self, redis: Redis, integration_id: str, *, lease_s: float) -> None:
        self.redis = redis
        self.key = f"{GATE_PREFIX}{integration_id}"
        self.waiters_key = f"{GATE_WAITERS_PREFIX}{integration_id}"
        self.pace_key = f"{PACE_PREFIX}{integration_id}"
        self.lease_s = lease_s

    async def enter(self, job_id: str, limit: int, *, urgent: bool = False) -> bool:
        """Take a running slot for a job, or refresh the one it holds; False when none is free.

        Access removal goes first here as on the workers' lanes: while an urgent job waits, a
        freed slot is kept for it, so a backlog of creates cannot take every slot in turn.
        """
        now = time.time()
        taken = await self.redis.eval(  # type: ignore[misc]
            ACQUIRE,
            2,
            self.key,
            self.waiters_key,
            job_id,
            str(now),
            str(now + self.lease_s),
            str(limit),
            "1" if urgent else "0",
            str(now + GATE_URGENT_WAIT_S),
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
