"""Alerts: a job that needs a person, or an integration turning broken or degraded, tells
its webhook.

An alert is an outbox row (`webhook_delivery`) written in the transaction of the move that
caused it, so it is never lost and never holds the job up; each worker's maintenance sends
what is due. Each delivery is a POST of JSON signed with HMAC-SHA256 over
`{timestamp}.{body}` under the integration's secret (headers X-Usher-Timestamp,
X-Usher-Signature: sha256=..., X-Usher-Delivery), carrying the audit chain's head as signed
when sent. A receiver refuses a timestamp more than WEBHOOK_REPLAY_WINDOW_S from its clock
and a delivery id it has seen. A failed send is retried after WEBHOOK_BACKOFF_S, then given
up as failed; every delivery is kept and listed by `usher integrations show`.
"""

import hashlib
import hmac
import json
import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.webhooks import webhook_of
from engine.constants import (
    RETRY_JITTER,
    WEBHOOK_BACKOFF_S,
    WEBHOOK_BATCH,
    WEBHOOK_CLAIM_S,
    WEBHOOK_DELIVERY_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMEOUT_S,
    WEBHOOK_TIMESTAMP_HEADER,
)
from engine.settings import Settings
from engine.storage.anchors import anchor_head
from engine.storage.db import Database
from engine.storage.models import (
    DeliveryStatus,
    Identity,
    IntegrationWebhook,
    Job,
    JobKind,
    JobStatus,
    WebhookDelivery,
    inventories_of,
    utcnow,
)
from engine.storage.vault import Vault, VaultError

log = logging.getLogger(__name__)

ALERTING: frozenset[str] = frozenset(
    {JobStatus.failed, JobStatus.blocked, JobStatus.action_required}
)
"""The ends of a job that a person must look at."""
BROKEN = "integration.broken"
"""The alert of an integration whose breaker opened: no sign-in until someone acts."""
DEGRADED = "integration.degraded"
"""The alert of an integration whose flows matched a step only through a fallback locator."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header's value for a body sent at a time."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


async def queue_alert(
    session: AsyncSession,
    integration_id: str,
    event: str,
    payload: dict[str, Any],
    *,
    job_id: str | None = None,
) -> WebhookDelivery | None:
    """Queue an alert in the caller's transaction when the integration has a webhook."""
    if await session.get(IntegrationWebhook, integration_id) is None:
        return None
    delivery = WebhookDelivery(
        integration_id=integration_id, event=event, job_id=job_id, payload=payload
    )
    session.add(delivery)
    return delivery


async def queue_job_alert(
    session: AsyncSession, job_id: str, status: str, error: str | None
) -> WebhookDelivery | None:
    """Queue the alert of a job that ended needing a person, in the move's transaction.

    An inventory that fails as the one before it did says nothing new (an import is tried
    again every IMPORT_RETRY_S while its app refuses): one alert per run of failures.
    """
    if status not in ALERTING:
        return None
    job = await session.get(Job, job_id)
    if job is None:
        return None
    if job.kind == JobKind.inventory and await _inventory_failing_already(session, job):
        return None
    identity = await session.get(Identity, job.identity_id) if job.identity_id else None
    payload = {
        "job": {
            "id": job.id,
            "status": status,
            "attempt": job.attempt,
            "error": error,
            "identity": identity.user_name if identity else None,
        }
    }
    return await queue_alert(session, job.integration_id, f"job.{status}", payload, job_id=job.id)


async def _inventory_failing_already(session: AsyncSession, job: Job) -> bool:
    """Tell whether the integration's inventory that ended last before this one needed a
    person too."""
    query = (
        select(Job.status)
        .where(
            *inventories_of(job.integration_id),
            Job.id != job.id,
            col(Job.finished_at).is_not(None),
        )
        .order_by(col(Job.finished_at).desc())
        .limit(1)
    )
    return (await session.exec(query)).first() in ALERTING


def backoff_s(attempts: int) -> float | None:
    """Return the jittered wait after a delivery's n-th failure; None: give it up."""
    if attempts > len(WEBHOOK_BACKOFF_S):
        return None
    base = WEBHOOK_BACKOFF_S[attempts - 1]
    return base * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


async def _claim(db: Database, now: datetime) -> list[WebhookDelivery]:
    """Take the due deliveries for this worker: each moved past `now` by a compare-and-set.

    They are looked up in a read, so that a pass with nothing due (nearly every pass of
    every worker) never takes SQLite's write lock.
    """
    async with db.reader() as session:
        due = (
            await session.exec(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.status == DeliveryStatus.pending,
                    col(WebhookDelivery.next_at) <= now,
                )
                .order_by(col(WebhookDelivery.next_at))
                .limit(WEBHOOK_BATCH)
            )
        ).all()
    if not due:
        return []
    async with db.session() as session:
        claimed = []
        for item in due:
            taken = await session.exec(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == item.id,
                    WebhookDelivery.status == DeliveryStatus.pending,
                    WebhookDelivery.next_at == item.next_at,
                )
                .values(next_at=now + timedelta(seconds=WEBHOOK_CLAIM_S))
            )
            if taken.rowcount == 1:
                claimed.append(item)
        await session.commit()
        return claimed


async def _send(
    client: httpx.AsyncClient, url: str, secret: str, body: bytes, delivery: WebhookDelivery
) -> tuple[int | None, str | None]:
    """POST one signed delivery; return the receiver's status code or what went wrong."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
        WEBHOOK_SIGNATURE_HEADER: sign(secret, timestamp, body),
        WEBHOOK_DELIVERY_HEADER: delivery.id,
    }
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:2000]
    return response.status_code, None


async def deliver_due(
    db: Database, vault: Vault, settings: Settings, *, now: datetime | None = None
) -> int:
    """Send every due alert once; record each answer and when to try again. Return how many
    were received (2xx)."""
    moment = now or utcnow()
    claimed = await _claim(db, moment)
    if not claimed:
        return 0
    anchor = await anchor_head(db, settings)
    received = 0
    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
        for delivery in claimed:
            try:
                async with db.reader() as session:
                    hook = await webhook_of(session, vault, delivery.integration_id)
            except VaultError as exc:
                await _record(
                    db, delivery, moment, None, f"the secret cannot be read: {exc}", False
                )
                continue
            body = json.dumps(
                {
                    "id": delivery.id,
                    "event": delivery.event,
                    "at": delivery.created_at.isoformat(),
                    "integration_id": delivery.integration_id,
                    **delivery.payload,
                    "audit_anchor": anchor.as_dict() if anchor else None,
                },
                sort_keys=True,
            ).encode()
            code, error = (None, "the integration has no webhook any more")
            if hook is not None:
                code, error = await _send(client, hook[0], hook[1], body, delivery)
            ok = code is not None and 200 <= code < 300
            received += ok
            await _record(db, delivery, moment, code, error, ok)
    return received


async def _record(
    db: Database,
    delivery: WebhookDelivery,
    moment: datetime,
    code: int | None,
    error: str | None,
    ok: bool,
) -> None:
    """Record one attempt: delivered, due again after a back-off, or given up."""
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_code": code, "last_error": error}
    if ok:
        values.update(status=DeliveryStatus.delivered, delivered_at=utcnow())
    else:
        wait = backoff_s(attempts)
        if wait is None:
            values["status"] = DeliveryStatus.failed
        else:
            values["next_at"] = moment + timedelta(seconds=wait)
        log.warning("webhook delivery %s failed (%s)", delivery.id, error or f"HTTP {code}")
    async with db.session() as session:
        await session.exec(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
        )
        await session.commit()
