"""Direct assignments as the planner sees them: which values an identity holds by ticket.

An assignment grants its value while it is neither revoked nor expired and its
`expires_at` (if any) lies ahead, whether or not the expiry timer has passed yet. The
commands that write assignments live in engine/jobs/assignments.py; this module only
reads them, as plain data.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.storage.models import Assignment, utcnow


@dataclass(frozen=True)
class AssignmentGrant:
    """One live assignment as the planner sees it: its id, the value, and why."""

    id: str
    value: str
    reason: str


def assignment_source(grant: AssignmentGrant) -> str:
    """Name an assignment granting a value, as plans and the identity page show it."""
    return f"assignment: {grant.reason}"


def live_at(now: datetime) -> tuple[Any, ...]:
    """Return the conditions of an assignment that grants at `now`."""
    return (
        col(Assignment.revoked_at).is_(None),
        col(Assignment.expired_at).is_(None),
        or_(col(Assignment.expires_at).is_(None), col(Assignment.expires_at) > now),
    )


async def live_assignments(
    session: AsyncSession, integration_id: str, identity_id: str | None = None
) -> Mapping[str, tuple[AssignmentGrant, ...]]:
    """Return the live assignments of one identity (or of every identity), by identity."""
    query = (
        select(Assignment)
        .where(Assignment.integration_id == integration_id, *live_at(utcnow()))
        .order_by(col(Assignment.created_at), col(Assignment.id))
    )
    if identity_id is not None:
        query = query.where(Assignment.identity_id == identity_id)
    found: dict[str, list[AssignmentGrant]] = {}
    for row in (await session.exec(query)).all():
        grant = AssignmentGrant(row.id, row.value, row.reason)
        found.setdefault(row.identity_id, []).append(grant)
    return {identity: tuple(grants) for identity, grants in found.items()}
