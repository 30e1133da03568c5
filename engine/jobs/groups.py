"""Mapping commands that re-evaluate the members of the groups they touch.

A mapping changes what a pushed group grants, so its members are queued through one group
job each, in the transaction that writes the mapping: the worker fans the job out into
identity jobs and moves each member's generation on, as for a membership change.
"""

from collections.abc import Iterable

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import GroupRef, MappingView, list_mappings
from engine.apps.integrations import get_integration
from engine.apps.mappings import MappingChange, add_mapping, remove_mappings
from engine.apps.template import load_app
from engine.jobs.state import ensure_pending
from engine.settings import Settings
from engine.storage.models import Job, Membership


async def queue_members(
    session: AsyncSession, integration_id: str, groups: Iterable[GroupRef]
) -> list[Job]:
    """Queue each group's job with all its members, for the worker to fan out."""
    jobs: list[Job] = []
    for group in groups:
        query = select(Membership.member_id).where(Membership.group_id == group.id)
        members = set((await session.exec(query)).all())
        if not members:
            continue
        job = await ensure_pending(session, integration_id, group_id=group.id)
        job.members = sorted(set(job.members) | members)
        session.add(job)
        jobs.append(job)
    return jobs


async def mappings_of(session: AsyncSession, integration_id: str) -> list[MappingView]:
    """Return an integration's mappings; say clearly when there is no such integration."""
    integration = await get_integration(session, integration_id)
    return await list_mappings(session, integration.id)


async def map_group(
    session: AsyncSession,
    settings: Settings,
    integration_id: str,
    group: str,
    value: str,
    *,
    actor: str,
) -> tuple[MappingChange, list[Job]]:
    """Map a group to an entitlement value and queue its members; commit; return the jobs.

    The caller delivers the jobs after the commit if it can; the relay delivers them
    otherwise.
    """
    integration = await get_integration(session, integration_id)
    template = load_app(settings.flows_dir, integration.app)
    change = await add_mapping(session, template, integration.id, group, value, actor=actor)
    jobs = await queue_members(session, integration.id, change.groups) if change.created else []
    await session.commit()
    return change, jobs


async def unmap_group(
    session: AsyncSession,
    integration_id: str,
    group: str,
    value: str | None = None,
    *,
    actor: str,
) -> tuple[MappingChange, list[Job]]:
    """Remove a group's mappings and queue its members; commit; return the jobs."""
    integration = await get_integration(session, integration_id)
    change = await remove_mappings(session, integration.id, group, value, actor=actor)
    jobs = await queue_members(session, integration.id, change.groups)
    await session.commit()
    return change, jobs
