"""Dirty-marking: a SCIM change and the job that will reconcile it commit together."""

from typing import Any, Protocol

from sqlalchemy import event, inspect
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import GroupRef, group_grants, mapping_rules
from engine.apps.profile import watched_projection
from engine.apps.template import AppTemplate
from engine.jobs.guard import foresee_loss, wake
from engine.jobs.state import ensure_pending, first_job, lane_of
from engine.storage.models import Identity, Job, Lane, Membership, ScimGroup

NAMES_BEFORE = "usher_names_before"
"""Where a loaded group's row keeps the displayName and externalId it had when loaded."""


@event.listens_for(ScimGroup.display_name, "set")
@event.listens_for(ScimGroup.external_id, "set")
def _keep_names_before(group: ScimGroup, value: Any, old: Any, initiator: Any) -> None:
    """Note a loaded group's first displayName and externalId before a write changes them.

    The SCIM storage flushes a group before telling the outbox, so the row's history is
    gone by then; what a rename did to the group's grants is read from this note.
    """
    state = inspect(group)
    if state.transient or state.pending:
        return
    before = state.info.setdefault(NAMES_BEFORE, {})
    before.setdefault(initiator.key, old)


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
        """Bump the identity's generation and queue a job when its flows see the change.

        A user who should lose access is noted for the mass-change guard at once, so a burst
        of deactivations counts whole before its first job runs; a job the guard holds is
        queued again, to run what the change brought that is not a removal.
        """
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
        if before is None:
            job = first_job(self.session, identity.integration_id, identity.id, lane_of(identity))
        else:
            job = await ensure_pending(
                self.session,
                identity.integration_id,
                identity_id=identity.id,
                lane=lane_of(identity),
            )
        await wake(self.session, job)
        if job.lane == Lane.urgent:
            await foresee_loss(self.session, job)
        self.pending[job.id] = job

    async def group_changed(self, group: ScimGroup, changed_member_ids: set[str]) -> None:
        """Queue one job for the group with the members who joined or left.

        The ids go into the job's one row, so a push of thousands of members writes
        one row in the request; the worker fans them out into identity jobs. A rename or
        a new externalId that changes what the group grants adds every member.
        """
        if await self._grants_changed(group):
            query = select(Membership.member_id).where(Membership.group_id == group.id)
            changed_member_ids = changed_member_ids | set((await self.session.exec(query)).all())
        if not changed_member_ids:
            return
        group.generation += 1
        self.session.add(group)
        job = await ensure_pending(self.session, group.integration_id, group_id=group.id)
        job.members = sorted(set(job.members) | changed_member_ids)
        self.session.add(job)
        self.pending[job.id] = job

    async def _grants_changed(self, group: ScimGroup) -> bool:
        """Tell whether a write renamed the group so that it grants other values than before."""
        before = inspect(group).info.pop(NAMES_BEFORE, None)
        if not before:
            return False
        if any(value is not None and not isinstance(value, str) for value in before.values()):
            return True  # the old name was not loaded: assume the grants changed
        old = GroupRef(
            group.id,
            before.get("display_name", group.display_name),
            before.get("external_id", group.external_id),
        )
        new = GroupRef(group.id, group.display_name, group.external_id)
        if old == new:
            return False
        catalogue = {e.value for e in self.template.entitlements}
        rules = await mapping_rules(self.session, group.integration_id)
        values_before = {value for value, _ in group_grants(old, rules, catalogue)}
        return values_before != {value for value, _ in group_grants(new, rules, catalogue)}
