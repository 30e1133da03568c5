"""Operators who sign in to the pages: created, listed, disabled; passwords kept as Argon2id."""

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import PASSWORD_MIN_LENGTH
from engine.storage.models import ApiToken, AuditEvent, Operator, Role

HASHER = PasswordHasher()
"""Argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile)."""


@cache
def decoy_hash() -> str:
    """Return a hash to check an unknown username against, made once, when first needed."""
    return HASHER.hash("an unknown operator takes as long to refuse as a known one")


class OperatorError(Exception):
    """Bad input for an operator command; the message says what to fix."""


def check_role(role: str) -> str:
    """Return a known role, or say which ones exist."""
    if role not in set(Role):
        raise OperatorError(f"role must be one of {', '.join(Role)}, not {role!r}")
    return role


def username_key(username: str) -> str:
    """Return the form a username is stored and looked up in: trimmed and case-folded."""
    return username.strip().casefold()


async def create_operator(
    session: AsyncSession, username: str, password: str, role: str, *, actor: str
) -> Operator:
    """Create an operator who signs in with a password; audited; committed."""
    key = username_key(username)
    if not key:
        raise OperatorError("a username is required")
    if len(password) < PASSWORD_MIN_LENGTH:
        raise OperatorError(f"the password needs at least {PASSWORD_MIN_LENGTH} characters")
    if (await session.exec(select(Operator).where(Operator.username == key))).first():
        raise OperatorError(f"operator {key!r} exists already")
    password_hash = await asyncio.to_thread(HASHER.hash, password)
    operator = Operator(username=key, password_hash=password_hash, role=check_role(role))
    session.add(operator)
    session.add(
        AuditEvent(actor=actor, event="operator.created", target=key, detail={"role": role})
    )
    await session.commit()
    return operator


async def list_operators(session: AsyncSession) -> list[Operator]:
    """Return every operator by username."""
    return list((await session.exec(select(Operator).order_by(col(Operator.username)))).all())


async def disable_operator(session: AsyncSession, username: str, *, actor: str) -> Operator:
    """Disable an operator: their session stops working at their next request."""
    key = username_key(username)
    operator = (await session.exec(select(Operator).where(Operator.username == key))).first()
    if operator is None:
        raise OperatorError(f"no operator {key!r}")
    operator.disabled = True
    session.add(operator)
    session.add(AuditEvent(actor=actor, event="operator.disabled", target=key))
    await session.commit()
    return operator


async def check_password(session: AsyncSession, username: str, password: str) -> Operator | None:
    """Return the enabled operator whose password this is, else None, as slowly either way."""
    key = username_key(username)
    operator = (await session.exec(select(Operator).where(Operator.username == key))).first()
    stored = operator.password_hash if operator is not None else decoy_hash()
    try:
        await asyncio.to_thread(HASHER.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if operator is None or operator.disabled:
        return None
    return operator


async def list_api_tokens(session: AsyncSession) -> list[ApiToken]:
    """Return every operator API token, oldest first (their hashes never leave the engine)."""
    return list((await session.exec(select(ApiToken).order_by(col(ApiToken.created_at)))).all())
