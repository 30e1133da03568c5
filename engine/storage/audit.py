"""The audit log as a hash chain: each event carries the SHA-256 of the one before it.

Every AuditEvent a session adds is chained when its transaction commits, whoever added it:
the session takes the chain's lock (PostgreSQL: an advisory transaction lock; SQLite: the
write lock BEGIN IMMEDIATE already holds), reads the head, and numbers and hashes its events
after it. The lock is taken last, just before the commit, so it is held for milliseconds and
never while the transaction waits for another row. A unique `seq` refuses a fork outright.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import event, text
from sqlmodel import Session, col, select

from engine.constants import AUDIT_GENESIS, AUDIT_LOCK_KEY
from engine.storage.models import Action, AuditEvent, Evidence, Step

STASH = "usher_audit_pending"
"""The session.info key of the events added but not chained yet."""


def canonical(item: AuditEvent) -> bytes:
    """Return the bytes an event's hash covers: every field but its own hash, sorted."""
    body = {
        "seq": item.seq,
        "prev": item.prev_sha256,
        "at": item.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": item.actor,
        "event": item.event,
        "integration_id": item.integration_id,
        "job_id": item.job_id,
        "target": item.target,
        "detail": item.detail,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def event_hash(item: AuditEvent) -> str:
    """Return the SHA-256 of an event, the link the next event carries."""
    return hashlib.sha256(canonical(item)).hexdigest()


@dataclass(frozen=True)
class Head:
    """The newest event of the chain: its number and hash."""

    seq: int
    sha256: str


def record(
    session: Any,
    *,
    actor: str,
    event_name: str,
    integration_id: str | None = None,
    job_id: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the session; it joins the chain when the transaction commits."""
    item = AuditEvent(
        actor=actor,
        event=event_name,
        integration_id=integration_id,
        job_id=job_id,
        target=target,
        detail=detail or {},
    )
    session.add(item)
    return item


def _unchained(session: Session) -> list[AuditEvent]:
    """Return the session's new events that have no place in the chain yet."""
    return [o for o in session.new if isinstance(o, AuditEvent) and o.seq is None]


def _hold_back(session: Session, _context: Any, _instances: Any) -> None:
    """Keep new events out of an early flush: they are chained at commit, under the lock."""
    pending = _unchained(session)
    if not pending:
        return
    session.info.setdefault(STASH, []).extend(pending)
    for item in pending:
        session.expunge(item)


def _chain(session: Session) -> None:
    """Number and hash the transaction's events after the head, under the chain's lock.

    The transaction's other rows are flushed first, so that every transaction takes the
    chain's lock after the row locks its writes take (on PostgreSQL a unique index's wait
    included), never before: two transactions cannot hold one each and wait for the other.
    Nothing autoflushes meanwhile: an early flush would stash the events being chained.
    """
    if session.in_nested_transaction():
        return
    session.flush()
    with session.no_autoflush:
        pending = session.info.pop(STASH, []) + _unchained(session)
        pending = [item for item in pending if item.seq is None]
        if not pending:
            return
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
        found = session.execute(
            select(AuditEvent.seq, AuditEvent.sha256)
            .where(col(AuditEvent.seq).is_not(None))
            .order_by(col(AuditEvent.seq).desc())
            .limit(1)
        ).first()
    seq, prev = (found[0], found[1]) if found is not None else (0, AUDIT_GENESIS)
    for item in pending:
        seq += 1
        item.seq, item.prev_sha256 = seq, prev
        item.sha256 = prev = event_hash(item)
        session.add(item)


def _forget(session: Session, previous: Any) -> None:
    """Drop the events of a transaction that rolled back: they never happened."""
    if previous.parent is None:
        session.info.pop(STASH, None)


HOOKS = (("before_flush", _hold_back), ("before_commit", _chain), ("after_soft_rollback", _forget))


def install_hooks() -> None:
    """Chain every audit event any session commits; once per process, whoever asks."""
    for name, hook in HOOKS:
        if not event.contains(Session, name, hook):
            event.listen(Session, name, hook)


async def head(session: Any) -> Head | None:
    """Return the newest chained event's number and hash, None before the first."""
    found = (
        await session.exec(
            select(AuditEvent.seq, AuditEvent.sha256)
            .where(col(AuditEvent.seq).is_not(None))
            .order_by(col(AuditEvent.seq).desc())
            .limit(1)
        )
    ).first()
    if found is None or found[0] is None or found[1] is None:
        return None
    return Head(found[0], found[1])


def digest_of(files: list[tuple[str, str]]) -> str:
    """Return one SHA-256 over a job's evidence files, as (key, sha256), in any order."""
    lines = sorted(f"{key}:{sha256}" for key, sha256 in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def steps_digest_of(steps: list[tuple[Any, ...]]) -> str:
    """Return one SHA-256 over a job's steps, each as the tuple `step_rows` reads, any order."""
    lines = sorted(json.dumps(list(row), default=str) for row in steps)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def step_rows(job_ids: list[str]) -> Any:
    """Return the query of the steps of jobs: what a step says happened, and when."""
    return (
        select(
            Action.job_id,
            Step.started_at,
            Step.id,
            Action.attempt,
            Action.name,
            Step.position,
            Step.name,
            Step.kind,
            Step.status,
            Step.error,
        )
        .join(Action, col(Action.id) == col(Step.action_id))
        .where(col(Action.job_id).in_(job_ids))
    )


async def evidence_digest(session: Any, job_id: str) -> dict[str, Any]:
    """Return what a job's evidence and steps are now, for the event that ends an attempt.

    `verify` compares it with the rows it finds, so a removed or replaced screenshot row,
    or a step rewritten to say something else, shows.
    """
    rows = (
        await session.exec(select(Evidence.key, Evidence.sha256).where(Evidence.job_id == job_id))
    ).all()
    steps = [tuple(row[2:]) for row in (await session.exec(step_rows([job_id]))).all()]
    return {
        "files": len(rows),
        "sha256": digest_of([(key, sha) for key, sha in rows]),
        "steps": len(steps),
        "steps_sha256": steps_digest_of(steps),
    }
