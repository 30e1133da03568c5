"""The per-integration gate on a real Redis: slots are leases, the pace is per minute."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from engine.jobs.gate import Gate


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """Return a client of the suite's private Redis."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def gate_of(redis: Redis, lease_s: float = 30) -> Gate:
    """Return the gate of a fresh integration."""
    return Gate(redis, uuid.uuid4().hex, lease_s=lease_s)


async def test_no_more_than_the_limit_run_and_a_leaving_job_frees_its_slot(redis: Redis) -> None:
    """Two slots: a third job waits until one leaves; a holder may refresh its own slot."""
    gate = gate_of(redis)
    assert await gate.enter("a", 2) and await gate.enter("b", 2)
    assert not await gate.enter("c", 2)
    assert await gate.enter("a", 2), "a job that holds a slot keeps it"
    await gate.leave("a")
    assert await gate.enter("c", 2)
    assert await gate.running() == 2


async def test_concurrent_entries_never_exceed_the_limit(redis: Redis) -> None:
    """Twenty workers at once: exactly the limit get in."""
    gate = gate_of(redis)
    entered = await asyncio.gather(*(gate.enter(f"job{n}", 3) for n in range(20)))
    assert sum(entered) == 3


async def test_a_dead_workers_slot_frees_itself_and_a_live_one_is_renewed(redis: Redis) -> None:
    """A lease nobody renews lapses; a renewed one stays."""
    gate = gate_of(redis, lease_s=0.4)
    assert await gate.enter("dead", 2) and await gate.enter("alive", 2)
    for _ in range(3):
        await asyncio.sleep(0.2)
        await gate.renew("alive")
    assert await gate.running() == 1
    assert await gate.enter("next", 2)


async def test_a_slot_freed_while_an_urgent_job_waits_is_kept_for_it(redis: Redis) -> None:
    """A backlog of creates cannot take every freed slot in turn while a leaver waits."""
    gate = gate_of(redis)
    assert await gate.enter("create-1", 2) and await gate.enter("create-2", 2)
    assert not await gate.enter("leaver", 2, urgent=True), "no slot free: it waits"
    await gate.leave("create-1")
    assert not await gate.enter("create-3", 2), "the freed slot is the leaver's"
    assert await gate.enter("leaver", 2, urgent=True)
    await gate.leave("create-2")
    assert await gate.enter("create-3", 2), "nobody urgent waits any more"


async def test_an_urgent_jobs_claim_lapses_if_it_never_comes_back(redis: Redis) -> None:
    """A cancelled leaver does not keep a slot from everyone else for long."""
    gate = gate_of(redis)
    assert await gate.enter("create-1", 1)
    assert not await gate.enter("leaver", 1, urgent=True)
    await gate.leave("create-1")
    await redis.zadd(gate.waiters_key, {"leaver": 0}, xx=True)  # its wait lapsed long ago
    assert await gate.enter("create-2", 1)


async def test_the_pace_allows_its_budget_per_minute_then_says_how_long_to_wait(
    redis: Redis,
) -> None:
    """Three actions a minute: the fourth is told to wait for the next minute's window."""
    gate = gate_of(redis)
    assert [await gate.pace(3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await gate.pace(3)
    assert 0 < wait <= 60
