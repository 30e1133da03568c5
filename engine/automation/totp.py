"""TOTP for the service account: enough time left, and never the same code twice."""

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.apps.otp import TotpSecretError, totp_of
from engine.automation.errors import FlowFailed
from engine.constants import (
    TOTP_DEFAULT_PERIOD_S,
    TOTP_LEDGER_PERIODS,
    TOTP_MIN_LEFT_S,
    TOTP_STEP_PREFIX,
)

_CLAIM = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class TotpLedger(Protocol):
    """Remember the last time-step used per account, across workers."""

    async def claim(
        self, account: str, counter: int, period_s: int = TOTP_DEFAULT_PERIOD_S
    ) -> bool:
        """Take a time-step for an account; False when it or a later one was used."""
        ...


class RedisTotpLedger:
    """Keep the last used time-step in Redis, so two workers never type one code."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def claim(
        self, account: str, counter: int, period_s: int = TOTP_DEFAULT_PERIOD_S
    ) -> bool:
        """Claim atomically with a script, since workers race for the same account.

        Without Redis no code is typed, since none can be proven unused: the flow fails
        as transient and the job tries again once Redis is back.
        """
        key = f"{TOTP_STEP_PREFIX}{account}"
        try:
            ttl_s = period_s * TOTP_LEDGER_PERIODS
            claimed = await self.redis.eval(_CLAIM, 1, key, counter, ttl_s)
        except (RedisError, OSError) as error:
            raise FlowFailed(f"TOTP ledger unreachable: {error}", transient=True) from error
        return bool(claimed)


class Clock(Protocol):
    """Return the current Unix time; tests pass their own."""

    def __call__(self) -> float:
        """Return seconds since the epoch."""
        ...


class Sleep(Protocol):
    """Wait a number of seconds; tests pass one that moves their clock."""

    def __call__(self, seconds: float) -> Awaitable[None]:
        """Wait."""
        ...


async def fresh_code(
    seed: str,
    account: str,
    ledger: TotpLedger,
    *,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
) -> str:
    """Return a code with enough of its window left, never typed before.

    `seed` is a base32 seed or an otpauth:// URI (its period and digits apply). Enough is
    TOTP_MIN_LEFT_S, or a third of a shorter period.
    """
    try:
        totp = totp_of(seed)
    except TotpSecretError as error:
        raise FlowFailed(f"the TOTP secret yields no codes: {error}") from None
    period = totp.interval
    min_left = min(TOTP_MIN_LEFT_S, period / 3)
    while True:
        now = clock()
        counter = int(now // period)
        left = period - (now % period)
        if left >= min_left and await ledger.claim(account, counter, period):
            return totp.at(counter * period)
        await sleep(left + 0.05)
