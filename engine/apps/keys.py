"""Integration API keys: a ticketing system's key to one integration's assignments API.

A key is shown once and stored as its SHA-256 (engine/storage/tokens.py, as operator
tokens are); it opens only the assignments of its own integration, and a revoked key
opens nothing.
"""

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.integrations import IntegrationError, get_integration
from engine.constants import TOKEN_PREFIX_INTEGRATION_KEY
from engine.storage import audit
from engine.storage.models import IntegrationKey, utcnow
from engine.storage.tokens import hash_token, new_token

DEFAULT_KEY_NAME = "assignments"
NAME_MAX: int = IntegrationKey.__table__.c.name.type.length  # type: ignore[attr-defined]
"""The longest name a key keeps: its column's length."""


class KeyNotFound(IntegrationError):
    """No API key has that id."""


@dataclass(frozen=True)
class KeyHolder:
    """Who a valid integration API key speaks for: its integration, and the key's name."""

    integration_id: str
    key_id: str
    name: str

    @property
    def actor(self) -> str:
        """Name the key as the audit log and `created_by` show it."""
        return f"key:{self.name}"


class KeyView(BaseModel):
    """An API key as operators see it: never the key, nor its hash."""

    id: str
    integration_id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def is_integration_key(token: str) -> bool:
    """Tell an integration API key from an operator token by its prefix."""
    return token.startswith(TOKEN_PREFIX_INTEGRATION_KEY)


def key_view(row: IntegrationKey) -> KeyView:
    """Return the operator's view of a key row."""
    return KeyView.model_validate(row, from_attributes=True)


async def create_key(
    session: AsyncSession, integration_id: str, name: str | None = None, *, actor: str
) -> tuple[KeyView, str]:
    """Create an API key for an integration; return it with the key, shown only this once."""
    integration = await get_integration(session, integration_id)
    label = (name or DEFAULT_KEY_NAME).strip()
    if not label or len(label) > NAME_MAX:
        raise IntegrationError(f"a key's name is 1 to {NAME_MAX} characters")
    key = new_token(TOKEN_PREFIX_INTEGRATION_KEY)
    row = IntegrationKey(integration_id=integration.id, name=label, key_hash=hash_token(key))
    session.add(row)
    audit.record(
        session,
        actor=actor,
        event_name="integration_key.created",
        integration_id=integration.id,
        target=row.id,
        detail={"name": label},
    )
    await session.commit()
    return key_view(row), key


async def revoke_key(session: AsyncSession, key_id: str, *, actor: str) -> KeyView:
    """Revoke an API key at once; revoking it again changes nothing."""
    row = await session.get(IntegrationKey, key_id)
    if row is None:
        raise KeyNotFound(f"no API key {key_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        audit.record(
            session,
            actor=actor,
            event_name="integration_key.revoked",
            integration_id=row.integration_id,
            target=row.id,
            detail={"name": row.name},
        )
        await session.commit()
    return key_view(row)


async def list_keys(session: AsyncSession, integration_id: str) -> list[KeyView]:
    """Return an integration's API keys, oldest first, revoked ones included."""
    integration = await get_integration(session, integration_id)
    query = (
        select(IntegrationKey)
        .where(IntegrationKey.integration_id == integration.id)
        .order_by(col(IntegrationKey.created_at), col(IntegrationKey.id))
    )
    return [key_view(row) for row in (await session.exec(query)).all()]


async def key_holder(session: AsyncSession, key: str) -> KeyHolder | None:
    """Return whom a live API key speaks for, noting its use; None for an unknown or revoked one.

    It commits its own transaction, so the request's writes never wait behind it.
    """
    query = select(IntegrationKey).where(IntegrationKey.key_hash == hash_token(key))
    row = (await session.exec(query)).first()
    if row is None or row.revoked_at is not None:
        return None
    row.last_used_at = utcnow()
    session.add(row)
    await session.commit()
    return KeyHolder(row.integration_id, row.id, row.name)


def render_keys(keys: list[KeyView]) -> str:
    """Lay an integration's keys out for a terminal: id, name, created, last used, revoked."""

    def when(moment: datetime | None, never: str) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else never

    width = max((len(k.name) for k in keys), default=4)
    lines = [f"{'id':<32}  {'name':<{width}}  created           last used         revoked"]
    for key in keys:
        lines.append(
            f"{key.id:<32}  {key.name:<{width}}  {when(key.created_at, '')}"
            f"  {when(key.last_used_at, 'never'):<16}  {when(key.revoked_at, 'no')}"
        )
    if not keys:
        lines.append("no keys (usher integrations create-key ID)")
    return "\n".join(lines)
