"""Groups that grant entitlements: pushed groups named after a value, and mappings.

A pushed SCIM Group whose displayName or externalId equals one of the app's entitlement
values (exactly) grants that value to every member. A group named otherwise grants what the
integration's mappings say. A deleted group grants nothing. The planner merges these with
the user's own `entitlements` and `roles`; this module says which group grants what and
loads, as plain data, the groups an identity belongs to and the integration's mappings.
"""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from unicodedata import normalize

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.assignments import AssignmentGrant, live_assignments
from engine.storage.models import GroupMapping, Membership, ScimGroup


class GroupKind(StrEnum):
    """How a mapping names its group."""

    external_id = "external_id"
    """The externalId the IdP sent (Entra's objectId): survives renames."""
    id = "id"
    """The group's SCIM id, for a group pushed without an externalId (Okta)."""
    name = "name"
    """As typed, for a group not pushed yet: matches its displayName or its externalId."""


@dataclass(frozen=True)
class GroupRef:
    """A live pushed group as the planner sees it: its id and the names the IdP gave it."""

    id: str
    display_name: str
    external_id: str | None = None


@dataclass(frozen=True)
class MappingRule:
    """One mapping as the planner sees it: the group it names and the value it grants."""

    kind: str
    key: str
    value: str

    def names(self, group: GroupRef) -> bool:
        """Tell whether this mapping is about that group."""
        if self.kind == GroupKind.external_id:
            return group.external_id == self.key
        if self.kind == GroupKind.id:
            return group.id == self.key
        return self.key in (group.display_name, group.external_id)


@dataclass(frozen=True)
class GroupSources:
    """An identity's live groups, its integration's mappings and its live direct assignments:
    plain data for the planner."""

    groups: tuple[GroupRef, ...] = ()
    mappings: tuple[MappingRule, ...] = ()
    assignments: tuple[AssignmentGrant, ...] = ()


NO_GROUPS = GroupSources()
"""No group, no mapping, no assignment: only the user's own attributes grant."""


def group_source(group: GroupRef) -> str:
    """Name a group granting by its own name, as plans and evidence show it."""
    return f'group "{group.display_name}"'


def mapping_source(group: GroupRef) -> str:
    """Name a mapping granting to a group's members, as plans and evidence show it."""
    return f'mapping of group "{group.display_name}"'


def group_grants(
    group: GroupRef, mappings: Iterable[MappingRule], catalogue: Collection[str]
) -> list[tuple[str, str]]:
    """Return (value, source) for each catalogue value a group grants: by name, then mapped."""
    named = {group.display_name, group.external_id} & set(catalogue)
    grants = [(value, group_source(group)) for value in sorted(v for v in named if v)]
    grants += [
        (rule.value, mapping_source(group))
        for rule in mappings
        if rule.value in catalogue and rule.names(group)
    ]
    return grants


def granting_nothing(
    groups: Iterable[GroupRef], mappings: Iterable[MappingRule], catalogue: Collection[str]
) -> list[GroupRef]:
    """Return the groups that match no entitlement value and no mapping."""
    rules = list(mappings)
    return [g for g in groups if not group_grants(g, rules, catalogue)]


def name_key(name: str) -> str:
    """Return the case-folded key a group's displayName is stored under (`display_name_key`)."""
    return normalize("NFC", name).casefold()


@dataclass(frozen=True)
class GroupDirectory:
    """The live groups and assignments of some identities of one integration, and its
    mappings."""

    by_member: Mapping[str, tuple[GroupRef, ...]] = field(default_factory=dict)
    mappings: tuple[MappingRule, ...] = ()
    assigned: Mapping[str, tuple[AssignmentGrant, ...]] = field(default_factory=dict)

    def of(self, identity_id: str) -> GroupSources:
        """Return what the planner needs about one identity's groups and assignments."""
        return GroupSources(
            self.by_member.get(identity_id, ()),
            self.mappings,
            self.assigned.get(identity_id, ()),
        )


async def mapping_rules(session: AsyncSession, integration_id: str) -> tuple[MappingRule, ...]:
    """Return an integration's mappings as rules, oldest first."""
    query = (
        select(GroupMapping)
        .where(GroupMapping.integration_id == integration_id)
        .order_by(col(GroupMapping.created_at), col(GroupMapping.id))
    )
    rows = (await session.exec(query)).all()
    return tuple(MappingRule(row.group_kind, row.group_key, row.value) for row in rows)


async def load_groups(
    session: AsyncSession, integration_id: str, identity_id: str | None = None
) -> GroupDirectory:
    """Load the live groups and assignments of one identity (or of all), and the mappings.

    A deleted group is left out: it grants nothing, though its rows stay for its job; so is
    an assignment revoked, expired or past its `expires_at`.
    """
    query = (
        select(Membership.member_id, ScimGroup.id, ScimGroup.display_name, ScimGroup.external_id)
        .join(ScimGroup, col(ScimGroup.id) == col(Membership.group_id))
        .where(ScimGroup.integration_id == integration_id, col(ScimGroup.deleted_at).is_(None))
        .order_by(col(ScimGroup.display_name), col(ScimGroup.id))
    )
    if identity_id is not None:
        query = query.where(Membership.member_id == identity_id)
    by_member: dict[str, list[GroupRef]] = {}
    for member_id, group_id, display_name, external_id in (await session.exec(query)).all():
        by_member.setdefault(member_id, []).append(GroupRef(group_id, display_name, external_id))
    return GroupDirectory(
        {member: tuple(groups) for member, groups in by_member.items()},
        await mapping_rules(session, integration_id),
        await live_assignments(session, integration_id, identity_id),
    )


async def group_sources_of(
    session: AsyncSession, integration_id: str, identity_id: str
) -> GroupSources:
    """Load what the planner needs about one identity's groups and assignments, as a job does."""
    return (await load_groups(session, integration_id, identity_id)).of(identity_id)


async def live_groups(session: AsyncSession, integration_id: str) -> list[tuple[GroupRef, int]]:
    """Return an integration's live groups with how many members each has, by name."""
    members = func.count(col(Membership.member_id))
    query = (
        select(ScimGroup.id, ScimGroup.display_name, ScimGroup.external_id, members)
        .outerjoin(Membership, col(Membership.group_id) == col(ScimGroup.id))
        .where(ScimGroup.integration_id == integration_id, col(ScimGroup.deleted_at).is_(None))
        .group_by(col(ScimGroup.id), col(ScimGroup.display_name), col(ScimGroup.external_id))
        .order_by(col(ScimGroup.display_name), col(ScimGroup.id))
    )
    rows = (await session.exec(query)).all()
    return [(GroupRef(gid, name, external), count) for gid, name, external, count in rows]


class MappingView(BaseModel):
    """A mapping as operators see it: which group, how it is named, which value."""

    id: str
    group: str
    group_kind: str
    group_label: str
    value: str
    created_at: datetime


def mapping_view(row: GroupMapping) -> MappingView:
    """Return the operator's view of a mapping row."""
    return MappingView(
        id=row.id,
        group=row.group_key,
        group_kind=row.group_kind,
        group_label=row.group_label,
        value=row.value,
        created_at=row.created_at,
    )


async def list_mappings(session: AsyncSession, integration_id: str) -> list[MappingView]:
    """Return an integration's mappings, by group then value."""
    query = (
        select(GroupMapping)
        .where(GroupMapping.integration_id == integration_id)
        .order_by(col(GroupMapping.group_label), col(GroupMapping.value))
    )
    return [mapping_view(row) for row in (await session.exec(query)).all()]
