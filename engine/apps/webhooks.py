"""An integration's webhook: where its alerts go, the secret that signs them, what was sent."""

import secrets
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.integrations import check_base_url, get_integration
from engine.constants import WEBHOOK_LIST_LIMIT, WEBHOOK_SECRET_BYTES, WEBHOOK_SECRET_PREFIX
from engine.storage import audit
from engine.storage.models import IntegrationWebhook, WebhookDelivery, utcnow
from engine.storage.vault import Vault


async def set_webhook(
    session: AsyncSession, vault: Vault, integration_id: str, url: str, *, actor: str
) -> str:
    """Point an integration's alerts at a URL with a new secret; return it, shown only once."""
    integration = await get_integration(session, integration_id)
    url = check_base_url(url)
    secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
    hook = await session.get(IntegrationWebhook, integration.id)
    if hook is None:
        hook = IntegrationWebhook(integration_id=integration.id, url=url, secret_ciphertext=b"")
    hook.url, hook.secret_ciphertext, hook.created_at = url, vault.encrypt(secret), utcnow()
    session.add(hook)
    audit.record(
        session,
        actor=actor,
        event_name="integration.webhook_set",
        integration_id=integration.id,
        target=url,
    )
    await session.commit()
    return secret


async def webhook_of(
    session: AsyncSession, vault: Vault, integration_id: str
) -> tuple[str, str] | None:
    """Return an integration's webhook URL and secret, None when it has none."""
    hook = await session.get(IntegrationWebhook, integration_id)
    if hook is None:
        return None
    return hook.url, vault.decrypt(hook.secret_ciphertext)


async def recent_deliveries(
    session: AsyncSession, integration_id: str, limit: int = WEBHOOK_LIST_LIMIT
) -> Sequence[WebhookDelivery]:
    """Return an integration's latest alert deliveries, newest first."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.integration_id == integration_id)
        .order_by(col(WebhookDelivery.created_at).desc())
        .limit(limit)
    )
    return (await session.exec(query)).all()


class DeliveryView(BaseModel):
    """One alert delivery as operators see it: what was sent, when, and the last answer."""

    id: str
    event: str
    job_id: str | None
    status: str
    attempts: int
    last_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class WebhookView(BaseModel):
    """Where an integration's alerts go (None: nowhere) and its latest deliveries."""

    url: str | None
    deliveries: list[DeliveryView]


async def describe_webhook(session: AsyncSession, integration_id: str) -> WebhookView:
    """Describe an integration's webhook and its latest deliveries, never the secret."""
    integration = await get_integration(session, integration_id)
    hook = await session.get(IntegrationWebhook, integration.id)
    deliveries = await recent_deliveries(session, integration.id)
    return WebhookView(
        url=hook.url if hook else None,
        deliveries=[DeliveryView.model_validate(d, from_attributes=True) for d in deliveries],
    )


async def render_webhook(session: AsyncSession, integration_id: str) -> list[str]:
    """Lay an integration's webhook and its latest deliveries out for a terminal."""
    hook = await session.get(IntegrationWebhook, integration_id)
    if hook is None:
        return ["webhook      none (usher integrations set-webhook ID URL)"]
    lines = [f"webhook      {hook.url}", "deliveries (newest first)"]
    for item in await recent_deliveries(session, integration_id):
        code = f"HTTP {item.last_code}" if item.last_code else (item.last_error or "not sent yet")
        lines.append(
            f"  {item.created_at:%Y-%m-%d %H:%M:%S}  {item.event:<28} {item.status:<9}"
            f" tries {item.attempts}  {code}" + (f"  job {item.job_id}" if item.job_id else "")
        )
    if len(lines) == 2:
        lines.append("  none")
    return lines
