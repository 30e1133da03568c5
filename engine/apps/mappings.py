"""Mappings: the IT admin says which entitlement value a group named otherwise grants.

These functions write in the caller's session and never commit: the caller queues the
re-evaluation of the groups' members in the same transaction (`engine.jobs.groups`).
"""

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import (
    GroupKind,
    GroupRef,
    MappingRule,
    MappingView,
    live_groups,
    mapping_view,
    name_key,
)
from engine.apps.integrations import IntegrationError
from engine.apps.template import AppTemplate
from engine.storage.models import AuditEvent, GroupMapping, ScimGroup

GROUP_MAX: int = GroupMapping.__table__.c.group_key.type.length  # type: ignore[attr-defined]
"""The longest group name, externalId or id a mapping keeps: its column's length."""


class MappingError(IntegrationError):
    """A mapping request the admin must fix: no group named, an unknown value."""


class MappingNotFound(IntegrationError):
    """No mapping matches what the admin asked to remove."""


@dataclass(frozen=True)
class MappingChange:
    """What a mapping command did, and the pushed groups whose members it affects."""

    mappings: list[MappingView]
    groups: list[GroupRef]
    created: bool = False


def _group_text(group: str) -> str:
    """Return the group as typed, refusing an empty or oversized one."""
    text = group.strip()
    if not text:
        raise MappingError("name a group: its displayName, its externalId or its id")
    if len(text) > GROUP_MAX:
        raise MappingError(f"a group name is at most {GROUP_MAX} characters")
    return text


async def find_group(session: AsyncSession, integration_id: str, group: str) -> ScimGroup | None:
    """Return the live pushed group named by id, externalId or displayName (any case)."""
    live = (ScimGroup.integration_id == integration_id, col(ScimGroup.deleted_at).is_(None))
    for condition in (
        col(ScimGroup.id) == group,
        col(ScimGroup.external_id) == group,
        col(ScimGroup.display_name_key) == name_key(group),
    ):
        query = select(ScimGroup).where(*live, condition).order_by(col(ScimGroup.created_at))
        found = (await session.exec(query)).first()
        if found is not None:
            return found
    return None


def _key_of(group: ScimGroup) -> tuple[str, str]:
    """Return how a mapping names a pushed group: its externalId, else its id."""
    if group.external_id:
        return GroupKind.external_id, group.external_id
    return GroupKind.id, group.id


def _ref(group: ScimGroup) -> GroupRef:
    """Return the planner's view of a group row."""
    return GroupRef(group.id, group.display_name, group.external_id)


async def add_mapping(
    session: AsyncSession,
    template: AppTemplate,
    integration_id: str,
    group: str,
    value: str,
    *,
    actor: str,
) -> MappingChange:
    """Map a group to an entitlement value; an existing identical mapping is kept as is.

    A pushed group is named by its externalId, else its id, so a rename keeps the mapping;
    a group not pushed yet is kept as typed and matches a displayName or an externalId.
    """
    text = _group_text(group)
    catalogue = [e.value for e in template.entitlements]
    if value not in catalogue:
        known = ", ".join(catalogue) or "none"
        raise MappingError(f"app {template.name} has no entitlement {value!r} (values: {known})")
    pushed = await find_group(session, integration_id, text)
    kind, key = _key_of(pushed) if pushed is not None else (GroupKind.name, text)
    label = pushed.display_name if pushed is not None else text
    existing = (
        await session.exec(
            select(GroupMapping).where(
                GroupMapping.integration_id == integration_id,
                GroupMapping.group_kind == kind,
                GroupMapping.group_key == key,
                GroupMapping.value == value,
            )
        )
    ).first()
    groups = [_ref(pushed)] if pushed is not None else []
    if existing is not None:
        return MappingChange([mapping_view(existing)], groups)
    row = GroupMapping(
        integration_id=integration_id,
        group_kind=kind,
        group_key=key,
        group_label=label,
        value=value,
    )
    session.add(row)
    session.add(
        AuditEvent(
            actor=actor,
            event="group_mapping.created",
            integration_id=integration_id,
            target=label,
            detail={"group_kind": kind, "group_key": key, "value": value},
        )
    )
    await session.flush()
    return MappingChange([mapping_view(row)], groups, created=True)


async def remove_mappings(
    session: AsyncSession,
    integration_id: str,
    group: str,
    value: str | None = None,
    *,
    actor: str,
) -> MappingChange:
    """Remove a group's mappings (of one value, or all); say so when there is none.

    The group is named as in `add_mapping`: its displayName (any case), externalId or id,
    or the name a mapping was made with.
    """
    text = _group_text(group)
    pushed = await find_group(session, integration_id, text)
    keys = {(GroupKind.name.value, text)}
    if pushed is not None:
        keys.add(_key_of(pushed))

    def named(row: GroupMapping) -> bool:
        by_key = (row.group_kind, row.group_key) in keys or row.group_key == text
        return by_key or name_key(row.group_label) == name_key(text)

    query = select(GroupMapping).where(GroupMapping.integration_id == integration_id)
    doomed = [
        row
        for row in (await session.exec(query)).all()
        if named(row) and (value is None or row.value == value)
    ]
    if not doomed:
        which = f" to {value!r}" if value is not None else ""
        raise MappingNotFound(f"integration {integration_id} has no mapping of {text!r}{which}")
    rules = [MappingRule(row.group_kind, row.group_key, row.value) for row in doomed]
    groups = [g for g, _ in await live_groups(session, integration_id)]
    affected = [g for g in groups if any(rule.names(g) for rule in rules)]
    for row in doomed:
        await session.delete(row)
        detail = {"group_kind": row.group_kind, "group_key": row.group_key, "value": row.value}
        session.add(
            AuditEvent(
                actor=actor,
                event="group_mapping.removed",
                integration_id=integration_id,
                target=row.group_label,
                detail=detail,
            )
        )
    await session.flush()
    return MappingChange([mapping_view(row) for row in doomed], affected)
