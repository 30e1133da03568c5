"""TOTP: enough time left in the window, and never the same code twice across workers."""

import asyncio

import pyotp
import pytest
from redis.asyncio import Redis

from engine.automation.totp import TOTP_PERIOD_S, RedisTotpLedger, fresh_code

SEED = pyotp.random_base32()
WINDOW = 1_800_000_000 // TOTP_PERIOD_S * TOTP_PERIOD_S


class FakeTime:
    """A clock and a sleep that moves it, so windows pass instantly."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
async def ledger(redis_url: str) -> RedisTotpLedger:
    """Return a ledger on the test Redis."""
    return RedisTotpLedger(Redis.from_url(redis_url))


def account() -> str:
    """Return an account name no other test uses."""
    return f"test-{pyotp.random_base32()[:8]}"


async def test_a_code_is_typed_only_with_enough_time_left(ledger: RedisTotpLedger) -> None:
    """25 s into a window (5 s left): wait for the next window and type its code."""
    fake = FakeTime(WINDOW + 25)
    code = await fresh_code(SEED, account(), ledger, clock=fake, sleep=fake.sleep)
    assert code == pyotp.TOTP(SEED).at(WINDOW + TOTP_PERIOD_S)
    assert fake.slept and fake.slept[0] == pytest.approx(5.05)


async def test_two_workers_never_type_the_same_code(ledger: RedisTotpLedger) -> None:
    """Two concurrent sign-ins in one window: the second waits for the next code."""
    name = account()
    first_time, second_time = FakeTime(WINDOW + 3), FakeTime(WINDOW + 3)
    first, second = await asyncio.gather(
        fresh_code(SEED, name, ledger, clock=first_time, sleep=first_time.sleep),
        fresh_code(
            SEED, name, RedisTotpLedger(ledger.redis), clock=second_time, sleep=second_time.sleep
        ),
    )
    totp = pyotp.TOTP(SEED)
    assert {first, second} == {totp.at(WINDOW), totp.at(WINDOW + TOTP_PERIOD_S)}


async def test_an_older_window_is_never_claimed_after_a_newer_one(ledger: RedisTotpLedger) -> None:
    """Once a later time-step was used, an earlier one is refused (clock skew between workers)."""
    name = account()
    assert await ledger.claim(name, 100)
    assert not await ledger.claim(name, 100)
    assert not await ledger.claim(name, 99)
    assert await ledger.claim(name, 101)
