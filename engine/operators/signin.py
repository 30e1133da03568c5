"""Sign-in: attempts counted per username and per address in Redis, then the password."""

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import (
    SIGNIN_MAX_PER_ADDRESS,
    SIGNIN_MAX_PER_USER,
    SIGNIN_PREFIX,
    SIGNIN_WINDOW_S,
)
from engine.operators.accounts import check_password, username_key
from engine.storage.models import Operator


class SignInUnavailable(Exception):
    """Redis cannot count attempts, so none is allowed: guessing must stay bounded."""


class SignInRefused(Exception):
    """The username or password is wrong, or the operator is disabled: one answer for all."""


class SignInThrottled(Exception):
    """Too many attempts for this username or from this address; the message says when."""


async def _count(redis: Redis, key: str) -> int:
    """Count one attempt in the key's window and return the window's total so far."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, SIGNIN_WINDOW_S, nx=True)
        total, _ = await pipe.execute()
    return int(total)


async def sign_in(
    session: AsyncSession, redis: Redis, username: str, password: str, address: str
) -> Operator:
    """Return the operator these credentials sign in, counting the attempt first.

    Attempts are counted whether they succeed or not, so a guesser cannot learn a password
    faster than SIGNIN_MAX_PER_USER per SIGNIN_WINDOW_S. Redis down refuses sign-in (the
    count could not be kept); the CLI still works.
    """
    try:
        by_user = await _count(redis, f"{SIGNIN_PREFIX}user:{username_key(username)}")
        by_address = await _count(redis, f"{SIGNIN_PREFIX}address:{address}")
    except (RedisError, OSError) as error:
        raise SignInUnavailable("sign-in is unavailable for a moment; try again") from error
    if by_user > SIGNIN_MAX_PER_USER or by_address > SIGNIN_MAX_PER_ADDRESS:
        minutes = SIGNIN_WINDOW_S // 60
        raise SignInThrottled(f"too many sign-in attempts; try again in {minutes} minutes")
    operator = await check_password(session, username, password)
    if operator is None:
        raise SignInRefused("wrong username or password")
    return operator
