"""Direct assignments: a ticketing system grants an entitlement value to one identity.

Creating, revoking and expiring an assignment each commit, in one transaction, the row,
an audit event and the identity's reconcile job (its generation moved on, so the sweep
brings it back should that job fail); the caller enqueues the job after the commit, and
the relay does if it cannot. A POST under an Idempotency-Key keeps its answer, so a retry
gets the first one back without a second row. Expiry is a compare-and-set: however many
workers' maintenance passes find an assignment due, one ends it and queues one job.
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import name_key
from engine.apps.integrations import IntegrationError, get_integration
from engine.apps.template import load_app
from engine.constants import (
    ASSIGNMENT_LIST_LIMIT,
    ASSIGNMENT_TTL_MAX_S,
    AUDIT_SYSTEM_ACTOR,
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_MAX,
)
from engine.jobs.state import ensure_pending, lane_of
from engine.settings import Settings
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import Assignment, AssignmentRequest, Identity, Job, utcnow

log = logging.getLogger(__name__)


class AssignmentError(IntegrationError):
    """An assignment request that cannot be served; the message says why."""


class AssignmentInvalid(AssignmentError):
    """The request names what does not exist or cannot be: an unknown value or user."""


class AssignmentNotFound(AssignmentError):
    """No such integration or assignment, as far as the caller may know."""


class AssignmentForbidden(AssignmentError):
    """The caller's API key belongs to another integration."""


class IdempotencyConflict(AssignmentError):
    """An Idempotency-Key used before with another request body."""


@dataclass(frozen=True)
class Requester:
    """Who calls the assignments API: an integration's API key, or an operator (any one)."""

    actor: str
    integration_id: str | None = None
    """The key's integration; None for an operator, who may act on every integration."""

    def check(self, integration_id: str) -> None:
        """Refuse an integration other than the key's own."""
        if self.integration_id is not None and self.integration_id != integration_id:
            raise AssignmentForbidden(
                "this API key belongs to another integration; use that integration's key"
            )


class AssignmentIn(BaseModel):
    """Grant an entitlement value to one user of an integration, for a reason, maybe for a time.

    Name the user by `user_name` (any case) or by `identity_id`, not both; give
    `expires_at` or `ttl_seconds`, or neither for an assignment that lasts until deleted.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    integration_id: str = Field(min_length=1, max_length=32)
    user_name: str | None = Field(default=None, min_length=1, max_length=500)
    identity_id: str | None = Field(default=None, min_length=1, max_length=32)
    value: str = Field(min_length=1, max_length=500, description="An entitlement value.")
    reason: str = Field(min_length=1, max_length=500, description="Why; plans show it.")
    expires_at: AwareDatetime | None = None
    ttl_seconds: int | None = Field(default=None, ge=1, le=ASSIGNMENT_TTL_MAX_S)

    @model_validator(mode="after")
    def _one_of_each(self) -> Self:
        """Require one way to name the user and at most one way to say when it ends."""
        if (self.user_name is None) == (self.identity_id is None):
            raise ValueError("name the user by user_name or by identity_id, exactly one")
        if self.expires_at is not None and self.ttl_seconds is not None:
            raise ValueError("give expires_at or ttl_seconds, not both")
        return self

    def fingerprint(self) -> str:
        """Return the SHA-256 of the request as sent, its moment of expiry in UTC."""
        body = self.model_dump(mode="json", exclude_none=True)
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at.astimezone(UTC).isoformat()
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class AssignmentView(BaseModel):
    """An assignment as its caller sees it, and the reconcile job its change queued."""

    id: str
    integration_id: str
    identity_id: str
    user_name: str
    value: str
    reason: str
    state: str = Field(description="active, expired or revoked.")
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    expired_at: datetime | None
    job_id: str | None = Field(
        default=None, description="The identity's reconcile job this change queued."
    )


@dataclass
class AssignmentChange:
    """What a command did: the assignment, the answer's status, the jobs to deliver."""

    view: AssignmentView
    status_code: int = 200
    jobs: list[Job] = field(default_factory=list)
    replayed: bool = False


def state_of(row: Assignment, now: datetime | None = None) -> str:
    """Return whether an assignment grants (active), ran out (expired) or was revoked."""
    if row.revoked_at is not None:
        return "revoked"
    moment = now or utcnow()
    if row.expired_at is not None or (row.expires_at is not None and row.expires_at <= moment):
        return "expired"
    return "active"


def view_of(row: Assignment, user_name: str, job: Job | None = None) -> AssignmentView:
    """Return the caller's view of an assignment row."""
    return AssignmentView(
        id=row.id,
        integration_id=row.integration_id,
        identity_id=row.identity_id,
        user_name=user_name,
        value=row.value,
        reason=row.reason,
        state=state_of(row),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        expired_at=row.expired_at,
        job_id=job.id if job is not None else None,
    )


def check_idempotency_key(key: str) -> str:
    """Return the key, refusing an empty, oversized or non-ASCII one."""
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isascii() or not key.isprintable():
        raise AssignmentInvalid(
            f"the {IDEMPOTENCY_KEY_HEADER} header is 1 to {IDEMPOTENCY_KEY_MAX} printable "
            "ASCII characters"
        )
    return key


async def _find_user(session: AsyncSession, integration_id: str, body: AssignmentIn) -> Identity:
    """Return the live identity the request names, or say clearly that there is none."""
    query = select(Identity).where(Identity.integration_id == integration_id)
    if body.identity_id is not None:
        query, named = query.where(Identity.id == body.identity_id), body.identity_id
    else:
        user_name = body.user_name or ""
        query, named = query.where(Identity.user_name_key == name_key(user_name)), user_name
    identity = (await session.exec(query)).first()
    if identity is None:
        raise AssignmentInvalid(
            f"integration {integration_id} has no user {named!r}: the IdP must push the user "
            "(SCIM) before it can be assigned anything"
        )
    if identity.deleted_at is not None:
        raise AssignmentInvalid(f"user {identity.user_name!r} was deleted in the IdP")
    return identity


def _expiry(body: AssignmentIn, now: datetime) -> datetime | None:
    """Return when the assignment ends, refusing a moment already past."""
    if body.ttl_seconds is not None:
        return now + timedelta(seconds=body.ttl_seconds)
    if body.expires_at is not None and body.expires_at <= now:
        raise AssignmentInvalid("expires_at is in the past")
    return body.expires_at


async def queue_identity(session: AsyncSession, identity: Identity) -> Job:
    """Move an identity's generation on and return its pending job, in the caller's transaction.

    The generation makes the sweep bring the identity back should the job fail.
    """
    await session.exec(
        update(Identity)
        .where(col(Identity.id) == identity.id)
        .values(generation=col(Identity.generation) + 1)
    )
    return await ensure_pending(
        session, identity.integration_id, identity_id=identity.id, lane=lane_of(identity)
    )


async def _replay(
    session: AsyncSession, integration_id: str, key: str, fingerprint: str
) -> AssignmentChange | None:
    """Return the first answer given under an Idempotency-Key, None when it is new.

    The same key with another body is refused: the client reused a key by mistake.
    """
    query = select(AssignmentRequest).where(
        AssignmentRequest.integration_id == integration_id,
        AssignmentRequest.idempotency_key == key,
    )
    first = (await session.exec(query)).first()
    if first is None:
        return None
    if first.request_sha256 != fingerprint:
        raise IdempotencyConflict(
            f"the {IDEMPOTENCY_KEY_HEADER} {key!r} was used before with another request body;"
            " send a new key for a new request, or the same body to get the first answer"
        )
    view = AssignmentView.model_validate(first.response)
    return AssignmentChange(view, first.status_code, replayed=True)


async def _claim_key(
    session: AsyncSession, integration_id: str, key: str, fingerprint: str
) -> AssignmentRequest | AssignmentChange:
    """Record a new Idempotency-Key, or return the answer of the request that got there first."""
    record = AssignmentRequest(
        integration_id=integration_id, idempotency_key=key, request_sha256=fingerprint
    )
    try:
        async with session.begin_nested():
            session.add(record)
    except IntegrityError:
        replay = await _replay(session, integration_id, key, fingerprint)
        if replay is None:
            raise
        return replay
    return record


async def assign(
    session: AsyncSession,
    settings: Settings,
    requester: Requester,
    body: AssignmentIn,
    idempotency_key: str | None = None,
) -> AssignmentChange:
    """Create an assignment, audit it and queue its identity's job; commit.

    The value must be in the app's catalogue (the error names the valid ones) and the user
    pushed and not deleted. Under an Idempotency-Key a retry returns the first answer.
    """
    requester.check(body.integration_id)
    try:
        integration = await get_integration(session, body.integration_id)
    except IntegrationError as error:
        raise AssignmentNotFound(str(error)) from None
    fingerprint = body.fingerprint()
    if idempotency_key is not None:
        key = check_idempotency_key(idempotency_key)
        replay = await _replay(session, integration.id, key, fingerprint)
        if replay is not None:
            return replay
    now = utcnow()
    expires_at = _expiry(body, now)
    template = load_app(settings.flows_dir, integration.app)
    catalogue = [e.value for e in template.entitlements]
    if body.value not in catalogue:
        raise AssignmentInvalid(
            f"app {template.name} has no entitlement {body.value!r}; valid values: "
            + (", ".join(catalogue) or "none")
        )
    identity = await _find_user(session, integration.id, body)
    row = Assignment(
        integration_id=integration.id,
        identity_id=identity.id,
        value=body.value,
        reason=body.reason,
        created_by=requester.actor,
        created_at=now,
        expires_at=expires_at,
    )
    record: AssignmentRequest | None = None
    if idempotency_key is not None:
        claimed = await _claim_key(session, integration.id, idempotency_key, fingerprint)
        if isinstance(claimed, AssignmentChange):
            return claimed
        record = claimed
    session.add(row)
    await session.flush()
    job = await queue_identity(session, identity)
    _audit(session, row, requester.actor, "assignment.created", identity, job)
    view = view_of(row, identity.user_name, job)
    if record is not None:
        record.assignment_id, record.status_code = row.id, 201
        record.response = view.model_dump(mode="json")
        session.add(record)
    await session.commit()
    return AssignmentChange(view, 201, [job])


def _audit(
    session: AsyncSession,
    row: Assignment,
    actor: str,
    event_name: str,
    identity: Identity,
    job: Job,
) -> None:
    """Add the audit event of an assignment's change, naming its user, value and job."""
    audit.record(
        session,
        actor=actor,
        event_name=event_name,
        integration_id=row.integration_id,
        job_id=job.id,
        target=row.id,
        detail={
            "identity_id": identity.id,
            "user_name": identity.user_name,
            "value": row.value,
            "reason": row.reason,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        },
    )


async def _visible(session: AsyncSession, requester: Requester, assignment_id: str) -> Assignment:
    """Return an assignment the caller may see; another integration's is not found, as none."""
    row = await session.get(Assignment, assignment_id)
    if row is None or requester.integration_id not in (None, row.integration_id):
        raise AssignmentNotFound(f"no assignment {assignment_id!r}")
    return row


async def unassign(
    session: AsyncSession, requester: Requester, assignment_id: str
) -> AssignmentChange:
    """Revoke an assignment, audit it and queue its identity's job; commit.

    Revoking one that already ended (revoked or expired) changes nothing and answers the same.
    """
    row = await _visible(session, requester, assignment_id)
    identity = await session.get(Identity, row.identity_id)
    assert identity is not None
    now = utcnow()
    ended: CursorResult[Any] = await session.exec(  # type: ignore[call-overload]
        update(Assignment)
        .where(
            col(Assignment.id) == row.id,
            col(Assignment.revoked_at).is_(None),
            col(Assignment.expired_at).is_(None),
        )
        .values(revoked_at=now, revoked_by=requester.actor)
    )
    if ended.rowcount != 1:
        await session.refresh(row)
        return AssignmentChange(view_of(row, identity.user_name))
    await session.refresh(row)
    job = await queue_identity(session, identity)
    _audit(session, row, requester.actor, "assignment.revoked", identity, job)
    view = view_of(row, identity.user_name, job)
    await session.commit()
    return AssignmentChange(view, 200, [job])


async def list_assignments(
    session: AsyncSession,
    requester: Requester,
    integration_id: str | None = None,
    user: str | None = None,
    *,
    include_ended: bool = False,
) -> list[AssignmentView]:
    """Return assignments newest first: of the key's integration (or the one named), of a user
    (a userName, any case, or an id), the ended ones only when asked."""
    integration_id = integration_id or requester.integration_id
    if integration_id is not None:
        requester.check(integration_id)
        try:
            await get_integration(session, integration_id)
        except IntegrationError as error:
            raise AssignmentNotFound(str(error)) from None
    query = select(Assignment, Identity.user_name).join(
        Identity, col(Identity.id) == col(Assignment.identity_id)
    )
    if integration_id is not None:
        query = query.where(Assignment.integration_id == integration_id)
    if user is not None:
        named = (col(Identity.id) == user) | (col(Identity.user_name_key) == name_key(user))
        query = query.where(named)
    if not include_ended:
        query = query.where(
            col(Assignment.revoked_at).is_(None), col(Assignment.expired_at).is_(None)
        )
    query = query.order_by(col(Assignment.created_at).desc(), col(Assignment.id).desc())
    rows = (await session.exec(query.limit(ASSIGNMENT_LIST_LIMIT))).all()
    return [view_of(row, user_name) for row, user_name in rows]


async def due_assignments(db: Database, limit: int) -> list[str]:
    """Return the ids of assignments past their expiry that no pass has ended yet."""
    query = (
        select(Assignment.id)
        .where(
            col(Assignment.expired_at).is_(None),
            col(Assignment.revoked_at).is_(None),
            col(Assignment.expires_at).is_not(None),
            col(Assignment.expires_at) <= utcnow(),
        )
        .order_by(col(Assignment.expires_at))
        .limit(limit)
    )
    async with db.reader() as session:
        return list((await session.exec(query)).all())


async def expire_one(db: Database, assignment_id: str) -> Job | None:
    """End one due assignment and queue its identity's job, once whoever else tries.

    The compare-and-set on (not expired, not revoked, due) lets one pass win; the others
    change nothing and queue nothing.
    """
    async with db.session() as session:
        now = utcnow()
        ended: CursorResult[Any] = await session.exec(  # type: ignore[call-overload]
            update(Assignment)
            .where(
                col(Assignment.id) == assignment_id,
                col(Assignment.expired_at).is_(None),
                col(Assignment.revoked_at).is_(None),
                col(Assignment.expires_at) <= now,
            )
            .values(expired_at=now)
        )
        if ended.rowcount != 1:
            await session.rollback()
            return None
        row = await session.get(Assignment, assignment_id)
        assert row is not None
        identity = await session.get(Identity, row.identity_id)
        assert identity is not None
        job = await queue_identity(session, identity)
        _audit(session, row, AUDIT_SYSTEM_ACTOR, "assignment.expired", identity, job)
        await session.commit()
        return job


async def expire_due(db: Database, *, limit: int) -> list[Job]:
    """End every due assignment (up to `limit`), each in its own transaction; return the jobs.

    One that fails is logged and tried again on the next pass.
    """
    jobs: list[Job] = []
    for assignment_id in await due_assignments(db, limit):
        try:
            job = await expire_one(db, assignment_id)
        except Exception:
            log.exception("could not expire assignment %s; the next pass tries", assignment_id)
            continue
        if job is not None:
            jobs.append(job)
    if jobs:
        log.info("expired %d assignment(s)", len(jobs))
    return jobs
