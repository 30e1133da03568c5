"""What an auditor relies on, checked: the audit chain, its anchors and every evidence file.

`verify` walks the chain in order and names each event that no longer hashes to itself,
does not follow the one before, is missing, or disagrees with a signed anchor kept outside
the database; it reads every evidence file back and names each one altered or removed, and
compares each job's evidence rows with the digest its last audited move recorded. Retention
pruning is an audited event too: the files it removed are expected to be gone.
"""

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import col, select

from engine.constants import AUDIT_GENESIS, AUDIT_SYSTEM_ACTOR, PRUNE_BATCH, VERIFY_BATCH
from engine.settings import Settings
from engine.storage import anchors as anchoring
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.evidence import EvidenceStore, evidence_store
from engine.storage.models import AuditEvent, Evidence, Job, utcnow

PRUNED = "evidence.pruned"
"""The audit event of a retention pass; `verify` expects its jobs' files to be gone."""


@dataclass
class Report:
    """What `verify` checked and every problem it found, each naming what was altered."""

    events: int = 0
    files: int = 0
    anchors: int = 0
    head: audit.Head | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Tell whether nothing was found altered or removed."""
        return not self.problems


@dataclass
class _Walk:
    """What the walk along the chain keeps for the checks after it."""

    digests: dict[str, tuple[int, datetime, dict[str, Any]]] = field(default_factory=dict)
    pruned: set[str] = field(default_factory=set)


async def _start(db: Database, since: datetime | None) -> tuple[int, str | None]:
    """Return the first event to check and the hash it must follow (None: unknown)."""
    if since is None:
        return 1, AUDIT_GENESIS
    async with db.reader() as session:
        first = (
            await session.exec(select(func.min(AuditEvent.seq)).where(AuditEvent.at >= since))
        ).one()
        if first is None:
            return 0, None
        if first == 1:
            return 1, AUDIT_GENESIS
        before = (await session.exec(select(AuditEvent).where(AuditEvent.seq == first - 1))).first()
    return first, before.sha256 if before is not None else None


def _check_event(
    item: AuditEvent, expected: int, prev: str | None, anchored: dict[int, list], report: Report
) -> None:
    """Name what is wrong with one event of the chain."""
    what = f"event {item.seq} ({item.event} by {item.actor} at {item.at.isoformat()})"
    if item.seq != expected:
        gone = f"{expected}" if item.seq == expected + 1 else f"{expected} to {item.seq - 1}"
        report.problems.append(f"event {gone} removed: the chain jumps to event {item.seq}")
    elif prev is not None and item.prev_sha256 != prev:
        report.problems.append(
            f"{what} does not follow event {expected - 1}: the event before it was altered"
            " or replaced"
        )
    if audit.event_hash(item) != item.sha256:
        report.problems.append(f"{what} altered: it no longer hashes to its recorded SHA-256")
    for anchor in anchored.get(item.seq or 0, []):
        report.anchors += 1
        if anchor.sha256 != item.sha256:
            report.problems.append(
                f"{what} disagrees with the anchor signed at {anchor.at}: the chain was"
                f" rewritten at or before event {item.seq}"
            )


async def _walk_chain(
    db: Database, start: int, prev: str | None, anchored: dict[int, list], report: Report
) -> _Walk:
    """Walk the chain from `start` in batches, checking each event and link."""
    walk = _Walk()
    expected, after = start, start - 1
    while True:
        async with db.reader() as session:
            batch = (
                await session.exec(
                    select(AuditEvent)
                    .where(col(AuditEvent.seq) > after)
                    .order_by(col(AuditEvent.seq))
                    .limit(VERIFY_BATCH)
                )
            ).all()
        for item in batch:
            assert item.seq is not None and item.sha256 is not None
            _check_event(item, expected, prev, anchored, report)
            report.events += 1
            report.head = audit.Head(item.seq, item.sha256)
            evidence = item.detail.get("evidence") if isinstance(item.detail, dict) else None
            if item.job_id and isinstance(evidence, dict):
                walk.digests[item.job_id] = (item.seq, item.at, evidence)
            if item.event == PRUNED:
                walk.pruned.update(item.detail.get("jobs", []))
            prev, expected, after = item.sha256, item.seq + 1, item.seq
        if len(batch) < VERIFY_BATCH:
            return walk


def _check_tail(anchored: dict[int, list], report: Report) -> None:
    """Name events removed from the end: an anchor names an event the chain no longer has."""
    last = report.head.seq if report.head else 0
    beyond = [a for seq, found in anchored.items() if seq > last for a in found]
    if beyond:
        newest = max(beyond, key=lambda a: a.seq)
        report.anchors += len(beyond)
        report.problems.append(
            f"events after {last} removed: the anchor signed at {newest.at} names event"
            f" {newest.seq} ({newest.sha256[:12]}…)"
        )


def _anchor_map(
    key: bytes, given: Sequence[anchoring.Anchor], start: int, report: Report
) -> dict[int, list]:
    """Return the genuine anchors from `start` on by event, naming any forged one."""
    anchored: dict[int, list] = defaultdict(list)
    for anchor in given:
        if not anchoring.genuine(key, anchor):
            report.problems.append(
                f"the anchor of event {anchor.seq} signed at {anchor.at} has a bad signature:"
                " altered, or signed with another key"
            )
        elif anchor.seq >= start:
            anchored[anchor.seq].append(anchor)
    return anchored


async def _check_files(
    db: Database, store: EvidenceStore, since: datetime | None, report: Report
) -> None:
    """Read every evidence file back and name each one altered or removed."""
    after = ""
    while True:
        query = select(Evidence).where(col(Evidence.id) > after)
        if since is not None:
            query = query.where(Evidence.created_at >= since)
        async with db.reader() as session:
            batch = (await session.exec(query.order_by(col(Evidence.id)).limit(VERIFY_BATCH))).all()
        for item in batch:
            report.files += 1
            what = f"{item.kind} {item.key} (job {item.job_id})"
            try:
                data = await store.get(item.key)
            except (FileNotFoundError, KeyError):
                report.problems.append(f"{what} removed from the evidence store")
                continue
            except ValueError as exc:
                report.problems.append(f"{what} cannot be read: {exc}")
                continue
            if hashlib.sha256(data).hexdigest() != item.sha256:
                report.problems.append(f"{what} altered: its SHA-256 is not the one recorded")
        if len(batch) < VERIFY_BATCH:
            return
        after = batch[-1].id


async def _check_digests(db: Database, walk: _Walk, report: Report) -> None:
    """Compare each job's evidence rows and steps with what its last audited move recorded.

    A pruned job's files are gone on purpose; its steps stay and are still compared.
    """
    jobs = list(walk.digests)
    for first in range(0, len(jobs), VERIFY_BATCH):
        chunk = jobs[first : first + VERIFY_BATCH]
        async with db.reader() as session:
            rows = (
                await session.exec(
                    select(
                        Evidence.job_id, Evidence.key, Evidence.sha256, Evidence.created_at
                    ).where(col(Evidence.job_id).in_(chunk))
                )
            ).all()
            steps = (await session.exec(audit.step_rows(chunk))).all()
        found: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for job_id, key, sha256, created_at in rows:
            if created_at <= walk.digests[job_id][1]:
                found[job_id].append((key, sha256))
        said: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for row in steps:
            if row[1] <= walk.digests[row[0]][1]:
                said[row[0]].append(tuple(row[2:]))
        for job_id in chunk:
            seq, _at, recorded = walk.digests[job_id]
            now = found.get(job_id, [])
            if job_id not in walk.pruned and audit.digest_of(now) != recorded.get("sha256"):
                report.problems.append(
                    f"job {job_id}: its evidence rows differ from what event {seq} recorded"
                    f" ({recorded.get('files')} files then, {len(now)} now): rows removed,"
                    " added or rewritten"
                )
            told = said.get(job_id, [])
            if (
                "steps_sha256" in recorded
                and audit.steps_digest_of(told) != recorded["steps_sha256"]
            ):
                report.problems.append(
                    f"job {job_id}: its steps differ from what event {seq} recorded"
                    f" ({recorded.get('steps')} steps then, {len(told)} now): a step removed,"
                    " added or rewritten"
                )


async def verify(
    db: Database,
    store: EvidenceStore,
    key: bytes,
    given: Sequence[anchoring.Anchor],
    *,
    since: datetime | None = None,
) -> Report:
    """Check the chain, the anchors and every evidence file; name what was altered or removed."""
    report = Report()
    start, prev = await _start(db, since)
    if not start:
        async with db.reader() as session:
            report.head = await audit.head(session)
    first_anchored = start or (report.head.seq + 1 if report.head else 1)
    anchored = _anchor_map(key, given, first_anchored, report)
    walk = _Walk()
    if start:
        walk = await _walk_chain(db, start, prev, anchored, report)
        if since is not None and prev is None and start > 1:
            report.problems.append(f"event {start - 1} removed: event {start} follows nothing")
    _check_tail(anchored, report)
    if not anchored and not report.problems:
        report.notes.append(
            "no anchor covers this stretch of the chain: a chain rewritten in the database"
            " whole could not be told apart"
        )
    async with db.reader() as session:
        unchained = (
            await session.exec(select(func.count()).where(col(AuditEvent.seq).is_(None)))
        ).one()
    if unchained:
        report.notes.append(f"{unchained} audit events predate the chain and are not covered")
    await _check_files(db, store, since, report)
    await _check_digests(db, walk, report)
    return report


async def verify_deployment(
    db: Database,
    settings: Settings,
    *,
    since: datetime | None = None,
    more_anchors: Sequence[Path] = (),
) -> Report:
    """Verify with the settings' key, store and anchor file, and any anchors handed in."""
    given, complaints = anchoring.read(settings.anchors_path)
    for path in more_anchors:
        found, trouble = anchoring.read_any(path)
        given, complaints = given + found, complaints + trouble
    report = await verify(
        db, evidence_store(settings, db), anchoring.audit_key(settings), given, since=since
    )
    report.problems[:0] = complaints
    return report


async def prune_evidence(
    db: Database,
    store: EvidenceStore,
    *,
    keep_days: int,
    batches: int | None = None,
    actor: str = AUDIT_SYSTEM_ACTOR,
) -> int:
    """Remove the evidence of jobs that ended more than `keep_days` ago, as audited events.

    Each batch's rows go with its `evidence.pruned` event in one transaction; the files go
    after the commit, so a crash leaves at worst a file no row names. `batches` bounds one
    pass, so a backlog never holds up the worker's timer.
    """
    cutoff = utcnow() - timedelta(days=keep_days)
    total = done = 0
    while batches is None or done < batches:
        done += 1
        async with db.session() as session:
            rows = (
                await session.exec(
                    select(Evidence.id, Evidence.key, Evidence.job_id)
                    .join(Job, col(Job.id) == col(Evidence.job_id))
                    .where(col(Job.finished_at) < cutoff)
                    .limit(PRUNE_BATCH)
                )
            ).all()
            if not rows:
                return total
            await session.exec(delete(Evidence).where(col(Evidence.id).in_([r[0] for r in rows])))
            audit.record(
                session,
                actor=actor,
                event_name=PRUNED,
                detail={
                    "before": cutoff.isoformat(),
                    "files": len(rows),
                    "jobs": sorted({r[2] for r in rows}),
                },
            )
            await session.commit()
        for _id, key, _job in rows:
            await store.delete(key)
        total += len(rows)
        if len(rows) < PRUNE_BATCH:
            return total
    return total
