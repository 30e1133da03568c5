"""TOTP: enough time left in the window, and never the same code twice across workers."""

import asyncio

import pyotp
import pytest
from redis.asyncio import Redis

from engine.apps.otp import TotpSecretError, totp_of
from engine.automation.errors import FlowFailed
from engine.automation.totp import RedisTotpLedger, fresh_code
from engine.constants import TOTP_DEFAULT_PERIOD_S as TOTP_PERIOD_S

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


async def test_an_otpauth_uri_sets_the_period_and_the_digits(ledger: RedisTotpLedger) -> None:
    """The QR code's URI: ten-second, eight-digit codes; a third of ten seconds is enough."""
    app = pyotp.TOTP(SEED, interval=10, digits=8)
    uri = app.provisioning_uri(name="usher-bot", issuer_name="Acme")
    fake = FakeTime(WINDOW + 7.5)
    code = await fresh_code(uri, account(), ledger, clock=fake, sleep=fake.sleep)
    assert code == app.at(WINDOW + 10) and len(code) == 8
    assert fake.slept and sum(fake.slept) < 3, "waited out 2.5 s of a 10 s window, not 30 s"


def test_a_seed_is_read_as_apps_print_it_and_a_bad_one_is_named_not_echoed() -> None:
    """Grouped lower-case seeds and 80-bit seeds work; typos and HOTP URIs are refused."""
    grouped = " ".join(SEED[i : i + 4].lower() for i in range(0, len(SEED), 4))
    assert totp_of(grouped).at(WINDOW) == pyotp.TOTP(SEED).at(WINDOW)
    short = "JBSWY3DPEHPK3PXP"
    assert len(totp_of(short).at(WINDOW)) == 6, "16 letters (80 bits), as many apps issue"
    for bad, said in [
        ("JBSWY3DPEHPK3PX1", "not base32"),
        (f"otpauth://hotp/Acme:bot?secret={SEED}&counter=3", "not for TOTP"),
        (f"otpauth://totp/Acme:bot?secret={SEED}&algorithm=MD5", "MD5"),
        ("otpauth://totp/Acme:bot?issuer=Acme", "empty"),
    ]:
        with pytest.raises(TotpSecretError, match=said) as refused:
            totp_of(bad)
        assert SEED not in str(refused.value) and "PX1" not in str(refused.value)


async def test_a_secret_that_yields_no_codes_fails_the_step_without_waiting(
    ledger: RedisTotpLedger,
) -> None:
    """A bad seed that slipped into the vault is a permanent, named failure."""
    with pytest.raises(FlowFailed, match="yields no codes") as failed:
        await fresh_code("not a seed", account(), ledger)
    assert not failed.value.transient
