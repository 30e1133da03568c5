"""Sign-in: failed attempts counted per username and per address in Redis, then the password."""

import contextlib

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

    Each attempt is counted against its username and its address before the password is
    checked, and given back when it succeeds: failures alone add up, so an office behind
    one address or an operator with several browsers is never locked out by signing in,
    while a guesser gets at most SIGNIN_MAX_PER_USER tries per username and
    SIGNIN_MAX_PER_ADDRESS per address in SIGNIN_WINDOW_S, however many run at once.
    Redis down refuses sign-in (the count could not be kept); the CLI still works.
    """
    keys = (
        f"{SIGNIN_PREFIX}user:{username_key(username)}",
        f"{SIGNIN_PREFIX}address:{address}",
    )
    try:
        by_user = await _count(redis, keys[0])
        by_address = await _count(redis, keys[1])
    except (RedisError, OSError) as error:
        raise SignInUnavailable("sign-in is unavailable for a moment; try again") from error
    if by_user > SIGNIN_MAX_PER_USER or by_address > SIGNIN_MAX_PER_ADDRESS:
        minutes = SIGNIN_WINDOW_S // 60
        raise SignInThrottled(f"too many sign-in attempts; try again in {minutes} minutes")
    operator = await check_password(session, username, password)
    if operator is None:
        raise SignInRefused("wrong username or password")
    with contextlib.suppress(RedisError, OSError):
        async with redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.decr(key)
                pipe.expire(key, SIGNIN_WINDOW_S, nx=True)
            await pipe.execute()
    return operator
