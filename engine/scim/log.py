"""The SCIM log: each request an IdP made, without its body, kept for a bounded time."""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.constants import (
    SCIM_CACHE_SIZE,
    SCIM_LOG_BUFFER_MAX,
    SCIM_LOG_FLUSH_S,
    SCIM_LOG_KEEP_DAYS,
    SCIM_LOG_PAGE_SIZE,
    SCIM_LOG_PRUNE_EVERY_S,
)
from engine.scim.cache import TtlCache
from engine.storage.db import Database
from engine.storage.models import Identity, Integration, Job, ScimRequest, utcnow

log = logging.getLogger(__name__)
USERS = "Users"


def _storable(text: str) -> str:
    """Drop NUL characters, which an IdP's path may carry and PostgreSQL's text refuses."""
    return text.replace("\x00", "")


def identity_of(path: str, body: Any, jobs: Sequence[Job]) -> str | None:
    """Return the identity a request was about: its job's, the path's, or the created one's."""
    for job in jobs:
        if job.identity_id:
            return job.identity_id
    parts = [p for p in _storable(path).split("/") if p]
    if not parts or parts[0] != USERS:
        return None
    if len(parts) > 1:
        return parts[1][:32]
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        return body["id"][:32]
    return None


def log_entry(
    integration_id: str, method: str, path: str, status: int, body: Any, jobs: Sequence[Job]
) -> ScimRequest:
    """Return the log line of one request: no body, no query (filters can name people)."""
    return ScimRequest(
        integration_id=integration_id,
        method=method[:10],
        path=("/" + _storable(path).strip("/"))[:1000],
        status=status,
        identity_id=identity_of(path, body, jobs),
        job_id=jobs[0].id if jobs else None,
    )


async def prune(session: AsyncSession, integration_id: str) -> None:
    """Drop an integration's log lines older than SCIM_LOG_KEEP_DAYS, along its index."""
    cutoff = utcnow() - timedelta(days=SCIM_LOG_KEEP_DAYS)
    await session.exec(
        delete(ScimRequest).where(
            col(ScimRequest.integration_id) == integration_id, col(ScimRequest.at) < cutoff
        )
    )


async def log_refused(db: Database, entry: ScimRequest) -> None:
    """Log a request that changed nothing, when its integration exists (an unknown id is not).

    A log line that cannot be written is itself logged: the IdP still gets its real answer.
    """
    try:
        async with db.session() as session:
            if await session.get(Integration, entry.integration_id) is None:
                return
            session.add(entry)
            await session.commit()
    except Exception:
        log.exception("SCIM log line not written for integration %s", entry.integration_id)


class ScimLog:
    """One process's writer of the SCIM log beyond the request's own transaction.

    A read's line waits here and is written with the other reads of the moment, within
    SCIM_LOG_FLUSH_S, in one write transaction: the read itself stays a reader that never
    takes SQLite's write lock. Lines still waiting when the process stops are written by
    `close`; a crash loses at most that moment of reads' lines, never a write's. Each
    integration's old lines are pruned at most every SCIM_LOG_PRUNE_EVERY_S.
    """

    def __init__(self) -> None:
        self.lines: list[ScimRequest] = []
        self.dropped = 0
        self._flusher: asyncio.Task[None] | None = None
        self._now = asyncio.Event()
        self._pruned: TtlCache[str, bool] = TtlCache(SCIM_LOG_PRUNE_EVERY_S, SCIM_CACHE_SIZE)

    def keep(self, db: Database, line: ScimRequest) -> None:
        """Hold a read's line until the next batch; past SCIM_LOG_BUFFER_MAX, count it lost."""
        if len(self.lines) >= SCIM_LOG_BUFFER_MAX:
            self.dropped += 1
            return
        self.lines.append(line)
        flusher = self._flusher
        loop = asyncio.get_running_loop()
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:
            self._now = asyncio.Event()
            self._flusher = asyncio.create_task(self._flush_soon(db, self._now))

    async def prune_if_due(self, session: AsyncSession, integration_id: str) -> None:
        """Prune an integration's old lines in this transaction, unless done here lately."""
        if self._pruned.get(integration_id) is None:
            self._pruned.put(integration_id, True)
            await prune(session, integration_id)

    async def _flush_soon(self, db: Database, now: asyncio.Event) -> None:
        """Write the held lines once the batch's moment has passed, or at once when closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(now.wait(), SCIM_LOG_FLUSH_S)
        await self.flush(db)

    async def flush(self, db: Database) -> None:
        """Write every held line in one transaction; a failure is logged, never raised."""
        lines, self.lines = self.lines, []
        if self.dropped:
            log.warning(
                "%d SCIM log lines of reads were dropped: the database fell behind", self.dropped
            )
            self.dropped = 0
        if not lines:
            return
        try:
            async with db.session() as session:
                session.add_all(lines)
                for integration_id in {line.integration_id for line in lines}:
                    await self.prune_if_due(session, integration_id)
                await session.commit()
        except Exception:
            log.exception("%d SCIM log lines of reads not written", len(lines))

    async def close(self, db: Database) -> None:
        """Write the pending batch now, and whatever is held after it."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None and flusher.get_loop() is asyncio.get_running_loop():
            self._now.set()
            await flusher
        await self.flush(db)


class ScimLogLine(BaseModel):
    """One request as the SCIM log shows it."""

    id: str
    at: datetime
    method: str
    path: str
    status: int
    identity_id: str | None
    user_name: str | None
    job_id: str | None


class ScimLogPage(BaseModel):
    """A page of the SCIM log, newest first, and the key of the next."""

    lines: list[ScimLogLine]
    next_before: str | None


async def read_log(
    session: AsyncSession,
    integration_id: str,
    *,
    before: str | None = None,
    limit: int = SCIM_LOG_PAGE_SIZE,
) -> ScimLogPage:
    """Return an integration's SCIM requests newest first, paged by key after line `before`."""
    query = select(ScimRequest).where(ScimRequest.integration_id == integration_id)
    after = await session.get(ScimRequest, before) if before else None
    if after is not None:
        query = query.where(
            or_(
                col(ScimRequest.at) < after.at,
                and_(col(ScimRequest.at) == after.at, col(ScimRequest.id) < after.id),
            )
        )
    query = query.order_by(col(ScimRequest.at).desc(), col(ScimRequest.id).desc())
    rows = list((await session.exec(query.limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    ids = {r.identity_id for r in rows if r.identity_id}
    names = dict(
        (
            await session.exec(
                select(Identity.id, Identity.user_name).where(col(Identity.id).in_(ids))
            )
        ).all()
    )
    return ScimLogPage(
        lines=[
            ScimLogLine(
                **row.model_dump(
                    include={"id", "at", "method", "path", "status", "identity_id", "job_id"}
                ),
                user_name=names.get(row.identity_id) if row.identity_id else None,
            )
            for row in rows
        ],
        next_before=rows[-1].id if more and rows else None,
    )
