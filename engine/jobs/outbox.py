"""Dirty-marking: a SCIM change and the job that will reconcile it commit together."""

from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.profile import watched_projection
from engine.apps.template import AppTemplate
from engine.jobs.state import ensure_pending, lane_of
from engine.storage.models import Identity, Job, ScimGroup


class ChangeMarker(Protocol):
    """What the SCIM storage tells about each change, inside the request's transaction."""

    async def user_changed(self, identity: Identity, before: dict | None) -> None:
        """Record that a User was created (before None), replaced, patched or deleted."""
        ...

    async def group_changed(self, group: ScimGroup, changed_member_ids: set[str]) -> None:
        """Record that a Group's members or attributes changed."""
        ...


class Outbox:
    """Mark identities dirty for one app's template; the caller enqueues `pending` after commit."""

    def __init__(self, session: AsyncSession, template: AppTemplate) -> None:
        self.session = session
        self.template = template
        self.pending: dict[str, Job] = {}

    async def user_changed(self, identity: Identity, before: dict | None) -> None:
        """Bump the identity's generation and queue a job when its flows see the change."""
        after = None if identity.deleted_at is not None else identity.resource
        used = self.template.used_attributes
        extension = self.template.extension
        unchanged = watched_projection(before, used, extension) == watched_projection(
            after, used, extension
        )
        if before is not None and after is not None and unchanged:
            return
        identity.generation += 1
        self.session.add(identity)
        job = await ensure_pending(
            self.session,
            identity.integration_id,
            identity_id=identity.id,
            lane=lane_of(identity),
        )
        self.pending[job.id] = job

    async def group_changed(self, group: ScimGroup, changed_member_ids: set[str]) -> None:
        """Queue one job for the group with the members who joined or left.

        The ids go into the job's one row, so a push of thousands of members writes
        one row in the request; the worker fans them out into identity jobs.
        """
        if not changed_member_ids:
            return
        group.generation += 1
        self.session.add(group)
        job = await ensure_pending(self.session, group.integration_id, group_id=group.id)
        job.members = sorted(set(job.members) | changed_member_ids)
        self.session.add(job)
        self.pending[job.id] = job
