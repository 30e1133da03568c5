"""SCIM Users and Groups in the request's session, so that a change and its job commit as one."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from functools import cache, partial
from typing import Any, cast

from scim2_models import (
    InvalidValueException,
    NotFoundException,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimProvider,
    SearchRequest,
    UniquenessException,
)
from scim2_server.errors import MethodNotAllowedException
from scim2_server.storage import AsyncScimStorage, SearchPage
from scim2_server.utils import load_default_provider
from sqlalchemy import delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.template import Entitlement
from engine.jobs.outbox import ChangeMarker
from engine.scim.catalogue import Catalogue
from engine.scim.columns import (
    CATALOGUE,
    GROUP,
    USER,
    Member,
    check_version,
    group_columns,
    kind_of,
    member_json,
    meta_of,
    model_of,
    requested_members,
    storable,
    stored_json,
    tombstone,
    user_columns,
)
from engine.scim.search import SqlConditions, search_page, wants_members
from engine.storage.models import Identity, Membership, ScimGroup, utcnow

CHUNK = 500
"""How many ids one `IN (...)` carries: far below SQLite's and PostgreSQL's parameter limits."""


@cache
def default_provider() -> ScimProvider:
    """Return scim2-server's default provider, built once: its models are costly to compose."""
    return load_default_provider()


def taken(attribute: str, value: str) -> str:
    """Return the 409 detail of a unique value another resource holds."""
    return f"{attribute} {value!r} is already taken"


def chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    """Split ids into slices small enough for one `IN (...)`."""
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


class SqlScimStorage(AsyncScimStorage):
    """Users and Groups of one integration, read and written in one request's session.

    Users are Identity rows and Groups ScimGroup rows whose members are Membership rows,
    diffed on update; both are soft-deleted. Each change is told to the `ChangeMarker` in the
    same session. The app's entitlement catalogue is served read-only by a `Catalogue`;
    searches are planned by `engine.scim.search`, which reads through `count` and `load`.
    Nothing is committed here: the caller commits the request, and `operation()` opens a
    savepoint so a failed operation leaves the session usable.

    :param provider: The provider whose models the resources are built with. Pass the
        `ScimService`'s own, so that PATCH and filters see the models the service validated.
    :param catalogue: The app's entitlements, served at /Entitlements and /Roles.
    :param savepoints: Whether each operation gets a savepoint; a caller that rolls a
        failed request back whole (one operation per transaction) needs none. Without
        savepoints a write is not flushed early: it goes to the database with the commit, so
        SQLite's write lock is held for the statements alone, and a unique index that refuses
        it there is turned into a 409 by `clash`, which the caller asks after the rollback.
    """

    supports_cursors = False

    def __init__(
        self,
        session: AsyncSession,
        integration_id: str,
        marker: ChangeMarker,
        *,
        provider: ScimProvider | None = None,
        catalogue: Sequence[Entitlement] = (),
        savepoints: bool = True,
    ) -> None:
        self.session = session
        self.savepoints = savepoints
        self.unchecked: list[tuple[Callable[[], Awaitable[bool]], str]] = []
        """The uniqueness checks of writes left to the commit, with the 409's detail."""
        self.integration_id = integration_id
        self.marker = marker
        self.provider = provider if provider is not None else default_provider()
        self.catalogue = Catalogue(self.provider, catalogue)

    def operation(self) -> AbstractAsyncContextManager[None]:
        """Enclose one SCIM operation in a savepoint, so that its failure undoes only itself."""
        return self._savepoint() if self.savepoints else nullcontext()

    async def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        """Return a live resource of this integration; members only when the response keeps them."""
        kind = kind_of(resource_type)
        if kind == CATALOGUE:
            return self.catalogue.entry(resource_type, resource_id)
        if kind == USER:
            return self._user_resource(resource_type, await self._identity(resource_id))
        group = await self._group(resource_id)
        members = await self._members_of([group.id]) if wants_members(response_parameters) else {}
        return self._group_resource(resource_type, group, members.get(group.id, []))

    async def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        """Return a page of matches: in SQL for IdP look-ups, by the filter evaluator otherwise."""
        return await search_page(self, resource_types, search_request)

    async def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        """Store a new User or Group, and tell the marker."""
        if self._writable(resource_type) == USER:
            return await self._create_user(resource_type, resource)
        return await self._create_group(resource_type, resource)

    async def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        """Replace a User or Group with its whole new state, and tell the marker."""
        if self._writable(resource_type) == USER:
            return await self._update_user(resource_type, resource, expected_version)
        return await self._update_group(resource_type, resource, expected_version)

    async def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        """Soft-delete a User or a Group, and tell the marker."""
        if self._writable(resource_type) == USER:
            await self._delete_user(resource_id, expected_version)
        else:
            await self._delete_group(resource_id, expected_version)

    async def count(self, kind: str, conditions: SqlConditions) -> int:
        """Return how many live rows of a kind meet SQL conditions, for an indexed search."""
        table = Identity if kind == USER else ScimGroup
        query = select(func.count()).select_from(table).where(*self._live(kind), *conditions)
        return (await self.session.exec(query)).one()

    async def load(
        self,
        resource_type: ResourceType,
        conditions: SqlConditions,
        *,
        with_members: bool,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Resource[Any]]:
        """Return the live resources of a type meeting SQL conditions, oldest first."""
        kind = kind_of(resource_type)
        if kind == CATALOGUE:
            return self.catalogue.entries(resource_type)
        rows = await self._rows(kind, [*self._live(kind), *conditions], offset=offset, limit=limit)
        return await self._resources(resource_type, rows, with_members=with_members)

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        """Run a block in a savepoint that an exception rolls back."""
        async with self.session.begin_nested():
            yield

    async def clash(self) -> UniquenessException | None:
        """Return the 409 of a write the commit refused on a unique index, once rolled back."""
        for taken_now, detail in self.unchecked:
            if await taken_now():
                return UniquenessException(detail=detail)
        return None

    @asynccontextmanager
    async def _unique(
        self, clash: Callable[[], Awaitable[bool]], detail: str
    ) -> AsyncIterator[None]:
        """Flush writes in a savepoint: a unique-constraint race is a 409, not a failed session.

        Without savepoints the writes wait for the commit, and the check for `clash`.
        """
        if not self.savepoints:
            self.unchecked.append((clash, detail))
            yield
            return
        try:
            async with self.session.begin_nested():
                yield
                await self.session.flush()
        except IntegrityError:
            if await clash():
                raise UniquenessException(detail=detail) from None
            raise

    def _writable(self, resource_type: ResourceType) -> str:
        """Return the kind of a resource type SCIM may write; the catalogue is read-only."""
        kind = kind_of(resource_type)
        if kind == CATALOGUE:
            raise MethodNotAllowedException(
                allowed=["GET"], detail=f"{resource_type.name} is read-only"
            )
        return kind

    def _user_resource(self, resource_type: ResourceType, identity: Identity) -> Resource[Any]:
        """Build the User resource of an Identity row."""
        resource = model_of(self.provider, resource_type).model_validate(identity.resource)
        resource.id = identity.id
        resource.meta = meta_of(resource_type, identity)
        return resource

    def _group_resource(
        self, resource_type: ResourceType, group: ScimGroup, members: Iterable[Member]
    ) -> Resource[Any]:
        """Build the Group resource of a ScimGroup row and the members given."""
        data = dict(group.resource)
        listed = [member_json(member) for member in members]
        if listed:
            data["members"] = listed
        resource = model_of(self.provider, resource_type).model_validate(data)
        resource.id = group.id
        resource.meta = meta_of(resource_type, group)
        return resource

    async def _identity(self, identity_id: str | None, *, lock: bool = False) -> Identity:
        """Return a live identity of this integration; lock it for a write."""
        if identity_id is None or not storable(identity_id):
            raise NotFoundException(detail="User not found")
        query = select(Identity).where(col(Identity.id) == identity_id, *self._live(USER))
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        identity = (await self.session.exec(query)).first()
        if identity is None:
            raise NotFoundException(detail=f"User {identity_id!r} not found")
        return identity

    async def _group(self, group_id: str | None, *, lock: bool = False) -> ScimGroup:
        """Return a group of this integration; lock it for a write."""
        if group_id is None or not storable(group_id):
            raise NotFoundException(detail="Group not found")
        query = select(ScimGroup).where(col(ScimGroup.id) == group_id, *self._live(GROUP))
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        group = (await self.session.exec(query)).first()
        if group is None:
            raise NotFoundException(detail=f"Group {group_id!r} not found")
        return group

    def _live(self, kind: str) -> SqlConditions:
        """Return the conditions of the rows SCIM sees: this integration's, not deleted."""
        if kind == USER:
            return [
                col(Identity.integration_id) == self.integration_id,
                col(Identity.deleted_at).is_(None),
            ]
        return [
            col(ScimGroup.integration_id) == self.integration_id,
            col(ScimGroup.deleted_at).is_(None),
        ]

    async def _members_of(self, group_ids: Sequence[str]) -> dict[str, list[Member]]:
        """Return the members of groups, by group id, ordered by member id."""
        members: dict[str, list[Member]] = {}
        for chunk in chunks(group_ids):
            query = (
                select(
                    Membership.group_id,
                    Membership.member_id,
                    Membership.member_type,
                    Membership.display,
                )
                .where(col(Membership.group_id).in_(chunk))
                .order_by(col(Membership.group_id), col(Membership.member_id))
            )
            for group_id, member_id, member_type, display in await self.session.exec(query):
                members.setdefault(group_id, []).append(Member(member_id, member_type, display))
        return members

    async def _member_types(self, member_ids: Iterable[str]) -> dict[str, str]:
        """Return the kind of each new member; ids this integration does not hold are a 400."""
        wanted = sorted(member_ids)
        kinds: dict[str, str] = {}
        for chunk in chunks(wanted):
            users = select(Identity.id).where(col(Identity.id).in_(chunk), *self._live(USER))
            kinds.update(dict.fromkeys((await self.session.exec(users)).all(), USER))
            groups = select(ScimGroup.id).where(col(ScimGroup.id).in_(chunk), *self._live(GROUP))
            kinds.update(dict.fromkeys((await self.session.exec(groups)).all(), GROUP))
        unknown = [member_id for member_id in wanted if member_id not in kinds]
        if unknown:
            raise InvalidValueException(detail=f"No User or Group has the member ids {unknown}")
        return kinds

    async def _user_name_taken(self, key: str, own_id: str | None) -> bool:
        """Tell whether another live user of this integration holds a userName key."""
        query = select(Identity.id).where(
            col(Identity.integration_id) == self.integration_id,
            col(Identity.user_name_key) == key,
            col(Identity.id) != own_id,
        )
        return (await self.session.exec(query)).first() is not None

    async def _display_name_taken(self, key: str, own_id: str | None) -> bool:
        """Tell whether another group of this integration holds a displayName key."""
        query = select(ScimGroup.id).where(
            col(ScimGroup.integration_id) == self.integration_id,
            col(ScimGroup.display_name_key) == key,
            col(ScimGroup.id) != own_id,
        )
        return (await self.session.exec(query)).first() is not None

    async def _ensure_user_name_free(self, columns: dict[str, Any], own_id: str | None) -> str:
        """Refuse a userName another user holds, whatever its case; return the 409 detail."""
        detail = taken("userName", columns["user_name"])
        if await self._user_name_taken(columns["user_name_key"], own_id):
            raise UniquenessException(detail=detail)
        return detail

    async def _ensure_display_name_free(self, columns: dict[str, Any], own_id: str | None) -> str:
        """Refuse a group displayName another group holds, whatever its case; return the detail."""
        detail = taken("displayName", columns["display_name"])
        if await self._display_name_taken(columns["display_name_key"], own_id):
            raise UniquenessException(detail=detail)
        return detail

    async def _create_user(
        self, resource_type: ResourceType, resource: Resource[Any]
    ) -> Resource[Any]:
        """Insert an Identity, then tell the marker a user was created.

        A userName another user holds is found by the insert itself: the unique index
        refuses it in a savepoint and the 409 names it, with no look-up before every create.
        """
        columns = user_columns(resource)
        detail = taken("userName", columns["user_name"])
        now = utcnow()
        identity = Identity(
            integration_id=self.integration_id,
            resource=stored_json(resource),
            created_at=now,
            updated_at=now,
            **columns,
        )
        key = columns["user_name_key"]
        async with self._unique(partial(self._user_name_taken, key, identity.id), detail):
            self.session.add(identity)
        await self.marker.user_changed(identity, None)
        return self._user_resource(resource_type, identity)

    async def _update_user(
        self, resource_type: ResourceType, resource: Resource[Any], expected_version: str | None
    ) -> Resource[Any]:
        """Replace an Identity's resource, then tell the marker what it was before."""
        identity = await self._identity(resource.id, lock=True)
        check_version(identity.version, expected_version)
        columns = user_columns(resource)
        stored = stored_json(resource)
        if stored == identity.resource:
            return self._user_resource(resource_type, identity)
        detail = await self._ensure_user_name_free(columns, identity.id)
        before = identity.resource
        key = columns["user_name_key"]
        async with self._unique(partial(self._user_name_taken, key, identity.id), detail):
            self._bump(identity, resource=stored, **columns)
        await self.marker.user_changed(identity, before)
        return self._user_resource(resource_type, identity)

    async def _delete_user(self, identity_id: str, expected_version: str | None) -> None:
        """Hide an identity from SCIM, free its userName and memberships, and tell the marker."""
        identity = await self._identity(identity_id, lock=True)
        check_version(identity.version, expected_version)
        before = identity.resource
        self._bump(identity, deleted_at=utcnow(), user_name_key=tombstone(identity.id))
        await self._leave_groups(identity.id)
        await self.session.flush()
        await self.marker.user_changed(identity, before)

    def _bump(self, row: Identity | ScimGroup, **values: Any) -> None:
        """Write new values to a row and move it to its next version."""
        for name, value in values.items():
            setattr(row, name, value)
        row.version += 1
        row.updated_at = utcnow()
        self.session.add(row)

    async def _leave_groups(self, member_id: str) -> None:
        """Remove a member from this integration's groups, which each change version."""
        query = (
            select(Membership.group_id)
            .join(ScimGroup, col(ScimGroup.id) == col(Membership.group_id))
            .where(col(Membership.member_id) == member_id, *self._live(GROUP))
        )
        group_ids = list((await self.session.exec(query)).all())
        if not group_ids:
            return
        await self.session.exec(
            delete(Membership).where(
                col(Membership.member_id) == member_id, col(Membership.group_id).in_(group_ids)
            )
        )
        await self.session.exec(
            update(ScimGroup)
            .where(col(ScimGroup.id).in_(group_ids))
            .values(version=col(ScimGroup.version) + 1, updated_at=utcnow())
        )

    async def _create_group(
        self, resource_type: ResourceType, resource: Resource[Any]
    ) -> Resource[Any]:
        """Insert a ScimGroup and its Membership rows, then tell the marker who joined."""
        columns = group_columns(resource)
        wanted = requested_members(resource)
        detail = await self._ensure_display_name_free(columns, None)
        kinds = await self._member_types(wanted)
        now = utcnow()
        group = ScimGroup(
            integration_id=self.integration_id,
            resource=stored_json(resource, "members"),
            created_at=now,
            updated_at=now,
            **columns,
        )
        members = [Member(i, kinds[i], wanted[i]) for i in sorted(wanted)]
        key = columns["display_name_key"]
        async with self._unique(partial(self._display_name_taken, key, group.id), detail):
            self.session.add(group)
            await self.session.flush()
            await self._insert_members(group.id, members)
        await self.marker.group_changed(group, set(wanted))
        return self._group_resource(resource_type, group, members)

    async def _update_group(
        self, resource_type: ResourceType, resource: Resource[Any], expected_version: str | None
    ) -> Resource[Any]:
        """Replace a group, writing only the members that joined, left or changed display."""
        group = await self._group(resource.id, lock=True)
        check_version(group.version, expected_version)
        columns = group_columns(resource)
        stored = stored_json(resource, "members")
        wanted = requested_members(resource)
        current = {m.member_id: m for m in (await self._members_of([group.id])).get(group.id, [])}
        added = wanted.keys() - current.keys()
        removed = current.keys() - wanted.keys()
        redisplayed = {
            i: wanted[i] for i in wanted.keys() & current.keys() if wanted[i] != current[i].display
        }
        if stored == group.resource and not (added or removed or redisplayed):
            return self._group_resource(resource_type, group, current.values())
        detail = await self._ensure_display_name_free(columns, group.id)
        kinds = await self._member_types(added)
        joined = [Member(i, kinds[i], wanted[i]) for i in sorted(added)]
        key = columns["display_name_key"]
        async with self._unique(partial(self._display_name_taken, key, group.id), detail):
            self._bump(group, resource=stored, **columns)
            await self._delete_members(group.id, sorted(removed))
            await self._insert_members(group.id, joined)
            await self._redisplay_members(group.id, redisplayed)
        await self.marker.group_changed(group, added | removed)
        kept = [
            m._replace(display=wanted[m.member_id])
            for m in current.values()
            if m.member_id in wanted
        ]
        members = sorted([*kept, *joined])
        return self._group_resource(resource_type, group, members)

    async def _delete_group(self, group_id: str, expected_version: str | None) -> None:
        """Hide a group and free its name; keep its row and members for its job to reconcile."""
        group = await self._group(group_id, lock=True)
        check_version(group.version, expected_version)
        members = (await self._members_of([group.id])).get(group.id, [])
        self._bump(group, deleted_at=utcnow(), display_name_key=tombstone(group.id))
        await self._leave_groups(group.id)
        await self.session.flush()
        await self.marker.group_changed(group, {m.member_id for m in members})

    async def _insert_members(self, group_id: str, members: Sequence[Member]) -> None:
        """Insert Membership rows in bulk, without loading them into the session."""
        rows = [
            {
                "group_id": group_id,
                "member_id": m.member_id,
                "member_type": m.member_type,
                "display": m.display,
            }
            for m in members
        ]
        if rows:
            await self.session.exec(insert(Membership), params=rows)

    async def _delete_members(self, group_id: str, member_ids: Sequence[str]) -> None:
        """Delete the Membership rows of members who left."""
        for chunk in chunks(member_ids):
            await self.session.exec(
                delete(Membership).where(
                    col(Membership.group_id) == group_id, col(Membership.member_id).in_(chunk)
                )
            )

    async def _redisplay_members(self, group_id: str, displays: dict[str, str | None]) -> None:
        """Update the display of members whose display changed, one row each."""
        for member_id, display in displays.items():
            await self.session.exec(
                update(Membership)
                .where(col(Membership.group_id) == group_id, col(Membership.member_id) == member_id)
                .values(display=display)
            )

    async def _rows(
        self,
        kind: str,
        where: SqlConditions,
        *,
        offset: int = 0,
        limit: int | None = None,
    ) -> Sequence[Identity] | Sequence[ScimGroup]:
        """Return the rows matching SQL conditions, oldest first, ties by id."""
        table = Identity if kind == USER else ScimGroup
        query = (
            select(table)
            .where(*where)
            .order_by(col(table.created_at), col(table.id))
            .offset(offset)
            .limit(limit)
        )
        return (await self.session.exec(query)).all()

    async def _resources(
        self,
        resource_type: ResourceType,
        rows: Sequence[Identity] | Sequence[ScimGroup],
        *,
        with_members: bool,
    ) -> list[Resource[Any]]:
        """Build the resources of rows, loading the members of groups in one go when asked."""
        if kind_of(resource_type) == USER:
            return [self._user_resource(resource_type, cast(Identity, row)) for row in rows]
        members = await self._members_of([row.id for row in rows]) if with_members else {}
        return [
            self._group_resource(resource_type, cast(ScimGroup, row), members.get(row.id, []))
            for row in rows
        ]
