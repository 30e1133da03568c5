"""The SCIM directory: one integration's Users and Groups, stored in the request's SQL session.

`SqlScimStorage` is the `AsyncScimStorage` scim2-server calls for a request. It writes through
the request's `AsyncSession` and never commits, so a resource and the job its change queues
(through the `ChangeMarker`) commit together, or not at all.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any, NamedTuple, Union, cast
from unicodedata import normalize

from scim2_models import (
    Group,
    InvalidValueException,
    Meta,
    NotFoundException,
    NotImplementedException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    Returned,
    ScimFilter,
    ScimProvider,
    SearchRequest,
    UniquenessException,
    User,
)
from scim2_models.path import (
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Path,
)
from scim2_server.errors import MethodNotAllowedException
from scim2_server.storage import AsyncScimStorage, SearchPage
from scim2_server.utils import load_default_provider, parametrize
from sqlalchemy import ColumnElement, delete, false, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.template import Entitlement
from engine.jobs.outbox import ChangeMarker
from engine.scim.provider import (
    OKTA_ENTITLEMENT_SCHEMA,
    OKTA_ROLE_SCHEMA,
    catalogue_schema_of,
)
from engine.storage.models import Identity, Membership, ScimGroup, utcnow

USER = "User"
GROUP = "Group"
CATALOGUE = "Catalogue"
ENDPOINTS = {USER: "Users", GROUP: "Groups"}
"""The endpoint of each kind of member, for the relative `$ref` scim2-server turns into a URL."""

SCHEMA_KINDS = {
    str(User.__schema__).casefold(): USER,
    str(Group.__schema__).casefold(): GROUP,
    OKTA_ENTITLEMENT_SCHEMA.casefold(): CATALOGUE,
    OKTA_ROLE_SCHEMA.casefold(): CATALOGUE,
}
TOMBSTONE_PREFIX = "Deleted:"
"""No character case-folds to an ASCII capital, so a tombstone never equals a live key."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""When the catalogue entries, which have no row, count as created: before any resource."""

MAX_TEXT = 500
"""The length of the indexed text columns."""

CHUNK = 500
"""How many ids one `IN (...)` carries: far below SQLite's and PostgreSQL's parameter limits."""


class Member(NamedTuple):
    """One member of a group, as a Membership row holds it."""

    member_id: str
    member_type: str
    display: str | None


@cache
def default_provider() -> ScimProvider:
    """Return scim2-server's default provider, built once: its models are costly to compose."""
    return load_default_provider()


def fold(value: str) -> str:
    """Return the key a case-insensitive value is stored and looked up under."""
    return normalize("NFC", value).casefold()


def tombstone(row_id: str) -> str:
    """Return the name key of a deleted user or group, so that its name can be reused."""
    return f"{TOMBSTONE_PREFIX}{row_id}"


def version_tag(version: int) -> str:
    """Return the weak ETag of a row version, as `meta.version` carries it."""
    return f'W/"{version}"'


def check_version(version: int, expected_version: str | None) -> None:
    """Refuse a write whose If-Match names a version the row no longer has."""
    if expected_version is not None and version_tag(version) != expected_version:
        raise PreconditionFailedException(detail=f"The resource is at {version_tag(version)}")


def storable(value: str) -> bool:
    """Tell whether a text fits a SQL text column: PostgreSQL refuses NUL, UTF-8 surrogates."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def bounded(value: str | None, attribute: str) -> str | None:
    """Refuse a value its column cannot hold, for a 400 rather than a database error."""
    if value is not None and len(value) > MAX_TEXT:
        raise InvalidValueException(detail=f"{attribute} is longer than {MAX_TEXT} characters")
    if value is not None and not storable(value):
        raise InvalidValueException(detail=f"{attribute} holds a NUL or an unpaired surrogate")
    return value


def chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    """Split ids into slices small enough for one `IN (...)`."""
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


@cache
def hidden_fields(model: type[Resource[Any]]) -> set[str]:
    """Return the attributes never returned (password): Usher has no use for them, so no store."""
    return {
        name
        for name in model.model_fields
        if model.get_field_annotation(name, Returned) == Returned.never
    }


def without_empty_extensions(data: dict[str, Any]) -> dict[str, Any]:
    """Drop the `schemas` an extension object repeats, and the extensions left empty."""
    tidy: dict[str, Any] = {}
    for key, value in data.items():
        if key.startswith("urn:") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "schemas"}
            if not value:
                continue
        tidy[key] = value
    dropped = {k.casefold() for k in data} - {k.casefold() for k in tidy}
    if dropped and isinstance(tidy.get("schemas"), list):
        tidy["schemas"] = [s for s in tidy["schemas"] if str(s).casefold() not in dropped]
    return tidy


def stored_json(resource: Resource[Any], *excluded: str) -> dict[str, Any]:
    """Return the JSON kept in a row: camelCase as on the wire, without id, meta or secrets."""
    exclude = {"id", "meta", *hidden_fields(type(resource)), *excluded}
    data = resource.model_dump(
        mode="json", by_alias=True, exclude_none=True, scim_ctx=None, exclude=exclude
    )
    return without_empty_extensions(data)


def meta_of(resource_type: ResourceType, row: Identity | ScimGroup) -> Meta:
    """Return the meta of a row: its dates and its version, never its location."""
    return Meta(
        resource_type=resource_type.name,
        created=row.created_at,
        last_modified=row.updated_at,
        version=version_tag(row.version),
    )


def member_json(member: Member) -> dict[str, Any]:
    """Return a member as a Group lists it, with a `$ref` relative to the SCIM root."""
    data: dict[str, Any] = {"value": member.member_id, "type": member.member_type}
    endpoint = ENDPOINTS.get(member.member_type)
    if endpoint is not None:
        data["$ref"] = f"{endpoint}/{member.member_id}"
    if member.display is not None:
        data["display"] = member.display
    return data


def user_columns(resource: Resource[Any]) -> dict[str, Any]:
    """Return the indexed Identity columns of a User, refusing values they cannot hold."""
    user_name = getattr(resource, "user_name", None)
    if not isinstance(user_name, str) or not user_name:
        raise InvalidValueException(detail="userName is required")
    return {
        "user_name": bounded(user_name, "userName"),
        "user_name_key": bounded(fold(user_name), "userName"),
        "external_id": bounded(resource.external_id, "externalId"),
        "display_name": bounded(getattr(resource, "display_name", None), "displayName"),
        "active": getattr(resource, "active", None) is not False,
    }


def group_columns(resource: Resource[Any]) -> dict[str, Any]:
    """Return the indexed ScimGroup columns of a Group, refusing values they cannot hold."""
    display_name = getattr(resource, "display_name", None)
    if not isinstance(display_name, str) or not display_name:
        raise InvalidValueException(detail="displayName is required")
    return {
        "display_name": bounded(display_name, "displayName"),
        "display_name_key": bounded(fold(display_name), "displayName"),
        "external_id": bounded(resource.external_id, "externalId"),
    }


def requested_members(resource: Resource[Any]) -> dict[str, str | None]:
    """Return the display of each member a Group names, by member id."""
    members: dict[str, str | None] = {}
    for member in getattr(resource, "members", None) or ():
        if not member.value:
            raise InvalidValueException(detail="A member needs a value")
        members[bounded(member.value, "members.value")] = bounded(member.display, "members.display")
    return members


def conjuncts(node: FilterNode) -> tuple[FilterNode, ...]:
    """Return the terms a filter requires all of: itself, unless it is an `and`."""
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        return tuple(term for each in node.terms for term in conjuncts(each))
    return (node,)


def mentions_members(node: FilterNode | None) -> bool:
    """Tell whether a filter reads `members`, so that the groups it tests need theirs."""
    if node is None:
        return False
    if isinstance(node, LogicalExpr):
        return any(mentions_members(term) for term in node.terms)
    if isinstance(node, Not):
        return mentions_members(node.expr)
    attr_path = getattr(node, "attr_path", None)
    return attr_path is not None and attr_path.attr.casefold() == "members"


def names_members(path: Path[Any]) -> bool:
    """Tell whether an attribute path designates a Group's `members` or one of its parts."""
    schema = path.schema
    in_group = schema is None or SCHEMA_KINDS.get(schema.casefold()) == GROUP
    return in_group and bool(path.parts) and path.parts[0].casefold() == "members"


def may_name_members(path: Path[Any]) -> bool:
    """Tell whether a path may keep `members`: one under another schema URN is not ruled out."""
    schema = path.schema
    foreign = schema is not None and SCHEMA_KINDS.get(schema.casefold()) != GROUP
    return foreign or names_members(path)


def wants_members(parameters: ResponseParameters[Any] | None) -> bool:
    """Tell whether a response keeps `members`, so that loading thousands can be skipped."""
    if parameters is None:
        return True
    if parameters.attributes:
        return any(may_name_members(path) for path in parameters.attributes)
    excluded = parameters.excluded_attributes or ()
    return not any(names_members(path) and len(path.parts) == 1 for path in excluded)


def created_then_id(resource: Resource[Any]) -> tuple[Any, str]:
    """Return the default order of search results: oldest first, ties by id."""
    assert resource.meta is not None
    return resource.meta.created or EPOCH, cast(str, resource.id)


def catalogue_json(entitlement: Entitlement) -> dict[str, Any]:
    """Return an app entitlement as the Okta Entitlement or Role resource it is published as."""
    data: dict[str, Any] = {"displayName": entitlement.label}
    if entitlement.kind == "multi":
        data["type"] = "Entitlement"
    if entitlement.description:
        data["description"] = entitlement.description
    return data


def page_of(found: list[Resource[Any]], search_request: SearchRequest[Any]) -> SearchPage:
    """Return the startIndex/count slice of every match, with their number."""
    start = search_request.start_index_0 or 0
    return SearchPage(total=len(found), resources=found[start : search_request.stop_index_0])


class SqlScimStorage(AsyncScimStorage):
    """Users and Groups of one integration, read and written in one request's session.

    Users are Identity rows and Groups ScimGroup rows whose members are Membership rows,
    diffed on update; both are soft-deleted. The app's entitlement catalogue is served
    read-only from its template. Nothing is committed here: the caller commits the request,
    and `operation()` opens a savepoint so a failed operation leaves the session usable.

    :param provider: The provider whose models the resources are built with. Pass the
        `ScimService`'s own, so that PATCH and filters see the models the service validated.
    :param catalogue: The app's entitlements, served at /Entitlements and /Roles.
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
    ) -> None:
        self.session = session
        self.integration_id = integration_id
        self.marker = marker
        self.provider = provider if provider is not None else default_provider()
        self.catalogue = tuple(catalogue)

    def operation(self) -> AbstractAsyncContextManager[None]:
        """Enclose one SCIM operation in a savepoint, so that its failure undoes only itself."""
        return self._savepoint()

    async def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        """Return a live resource of this integration; members only when the response keeps them."""
        kind = self._kind(resource_type)
        if kind == CATALOGUE:
            return self._catalogue_entry(resource_type, resource_id)
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
        resource_types = list({rt.name: rt for rt in resource_types}.values())
        scim_filter = self._bound_filter(search_request.filter, resource_types)
        if len(resource_types) != 1 or self._kind(resource_types[0]) == CATALOGUE:
            return await self._scanned_page(resource_types, [], scim_filter, search_request)
        kind = self._kind(resource_types[0])
        conditions, complete = self._indexed_conditions(kind, scim_filter)
        if complete and search_request.sort_by is None:
            return await self._indexed_page(resource_types[0], conditions, search_request)
        return await self._scanned_page(resource_types, conditions, scim_filter, search_request)

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

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        """Run a block in a savepoint that an exception rolls back."""
        async with self.session.begin_nested():
            yield

    @asynccontextmanager
    async def _unique(
        self, clash: Callable[[], Awaitable[bool]], detail: str
    ) -> AsyncIterator[None]:
        """Flush writes in a savepoint: a unique-constraint race is a 409, not a failed session."""
        try:
            async with self.session.begin_nested():
                yield
                await self.session.flush()
        except IntegrityError:
            if await clash():
                raise UniquenessException(detail=detail) from None
            raise

    def _kind(self, resource_type: ResourceType) -> str:
        """Return whether a resource type is stored as Users or Groups."""
        kind = SCHEMA_KINDS.get(str(resource_type.schema_).casefold())
        if kind is None:
            raise NotImplementedException(detail=f"{resource_type.name} is not stored")
        return kind

    def _writable(self, resource_type: ResourceType) -> str:
        """Return the kind of a resource type SCIM may write; the catalogue is read-only."""
        kind = self._kind(resource_type)
        if kind == CATALOGUE:
            raise MethodNotAllowedException(
                allowed=["GET"], detail=f"{resource_type.name} is read-only"
            )
        return kind

    def _catalogue(self, resource_type: ResourceType) -> list[Resource[Any]]:
        """Return the app's entitlements a catalogue resource type lists, in template order."""
        schema = str(resource_type.schema_).casefold()
        model = self._model(resource_type)
        entries = []
        for entitlement in self.catalogue:
            if catalogue_schema_of(entitlement.kind).casefold() != schema:
                continue
            entry = model.model_validate(catalogue_json(entitlement))
            entry.id = entitlement.value
            entry.meta = Meta(resource_type=resource_type.name)
            entries.append(entry)
        return entries

    def _catalogue_entry(self, resource_type: ResourceType, value: str) -> Resource[Any]:
        """Return one catalogue entry by its string value."""
        entry = next((e for e in self._catalogue(resource_type) if e.id == value), None)
        if entry is None:
            raise NotFoundException(detail=f"{resource_type.name} {value!r} not found")
        return entry

    def _model(self, resource_type: ResourceType) -> type[Resource[Any]]:
        """Return the model, extensions included, the provider composes for a resource type."""
        model = self.provider.model_for(resource_type)
        if model is None:
            raise NotImplementedException(detail=f"{resource_type.name} has no model")
        return cast(type[Resource[Any]], model)

    def _user_resource(self, resource_type: ResourceType, identity: Identity) -> Resource[Any]:
        """Build the User resource of an Identity row."""
        resource = self._model(resource_type).model_validate(identity.resource)
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
        resource = self._model(resource_type).model_validate(data)
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

    def _live(self, kind: str) -> list[ColumnElement[bool]]:
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
        detail = f"userName {columns['user_name']!r} is already taken"
        if await self._user_name_taken(columns["user_name_key"], own_id):
            raise UniquenessException(detail=detail)
        return detail

    async def _ensure_display_name_free(self, columns: dict[str, Any], own_id: str | None) -> str:
        """Refuse a group displayName another group holds, whatever its case; return the detail."""
        detail = f"displayName {columns['display_name']!r} is already taken"
        if await self._display_name_taken(columns["display_name_key"], own_id):
            raise UniquenessException(detail=detail)
        return detail

    async def _create_user(
        self, resource_type: ResourceType, resource: Resource[Any]
    ) -> Resource[Any]:
        """Insert an Identity, then tell the marker a user was created."""
        columns = user_columns(resource)
        detail = await self._ensure_user_name_free(columns, None)
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

    def _bound_filter(
        self, scim_filter: ScimFilter[Any] | None, resource_types: list[ResourceType]
    ) -> ScimFilter[Any] | None:
        """Return the filter bound to the searched models, as the evaluator needs."""
        if scim_filter is None or scim_filter.models:
            return scim_filter
        models = tuple(self._model(rt) for rt in resource_types)
        return parametrize(ScimFilter, Union[models])(str(scim_filter))  # noqa: UP007

    def _indexed_conditions(
        self, kind: str, scim_filter: ScimFilter[Any] | None
    ) -> tuple[list[ColumnElement[bool]], bool]:
        """Return the SQL for the indexed `eq` terms of a filter, and whether they are all of it."""
        if scim_filter is None:
            return [], True
        if scim_filter.model is None:
            return [], False
        terms = conjuncts(scim_filter.ast)
        conditions = [self._indexed_condition(kind, scim_filter, term) for term in terms]
        indexed = [condition for condition in conditions if condition is not None]
        return indexed, len(indexed) == len(terms)

    def _indexed_condition(
        self, kind: str, scim_filter: ScimFilter[Any], node: FilterNode
    ) -> ColumnElement[bool] | None:
        """Return the SQL of an `eq` on an indexed attribute, or None for the evaluator."""
        if not isinstance(node, Comparison) or node.op != CompareOperator.eq:
            return None
        if not isinstance(node.value, str):
            return None
        if not storable(node.value):
            return false()
        binding = scim_filter.resolve_comparison(node.attr_path, strict=False)
        if binding is None or binding.model is not scim_filter.model:
            return None
        if kind == GROUP and (binding.field_name, binding.sub_field_name) == ("members", "value"):
            return self._has_member(node.value)
        if binding.sub_field_name is not None:
            return None
        return self._column_equals(kind, binding.field_name, binding.case_exact, node.value)

    def _column_equals(
        self, kind: str, field_name: str, case_exact: bool, value: str
    ) -> ColumnElement[bool] | None:
        """Compare an indexed column to a value, when the column keeps the attribute's case rule."""
        exact = {
            (USER, "id"): col(Identity.id),
            (USER, "external_id"): col(Identity.external_id),
            (GROUP, "id"): col(ScimGroup.id),
            (GROUP, "external_id"): col(ScimGroup.external_id),
        }
        folded = {
            (USER, "user_name"): col(Identity.user_name_key),
            (GROUP, "display_name"): col(ScimGroup.display_name_key),
        }
        column = (exact if case_exact else folded).get((kind, field_name))
        if column is None:
            return None
        return column == (value if case_exact else fold(value))

    def _has_member(self, member_id: str) -> ColumnElement[bool]:
        """Return the SQL of `members eq "<id>"`: an indexed Membership look-up."""
        return (
            select(Membership.member_id)
            .where(
                col(Membership.group_id) == col(ScimGroup.id),
                col(Membership.member_id) == member_id,
            )
            .exists()
        )

    async def _indexed_page(
        self,
        resource_type: ResourceType,
        conditions: list[ColumnElement[bool]],
        search_request: SearchRequest[Any],
    ) -> SearchPage:
        """Count and page the matches in SQL, oldest first."""
        kind = self._kind(resource_type)
        where = [*self._live(kind), *conditions]
        table = Identity if kind == USER else ScimGroup
        total = (
            await self.session.exec(select(func.count()).select_from(table).where(*where))
        ).one()
        start = search_request.start_index_0 or 0
        if search_request.count == 0 or start >= total:
            return SearchPage(total=total, resources=[])
        rows = await self._rows(kind, where, offset=start, limit=search_request.count)
        resources = await self._resources(
            resource_type, rows, with_members=wants_members(search_request)
        )
        return SearchPage(total=total, resources=resources)

    async def _scanned_page(
        self,
        resource_types: list[ResourceType],
        conditions: list[ColumnElement[bool]],
        scim_filter: ScimFilter[Any] | None,
        search_request: SearchRequest[Any],
    ) -> SearchPage:
        """Load the candidates, keep those the filter evaluator matches, then sort and page them."""
        with_members = (
            wants_members(search_request)
            or mentions_members(scim_filter.ast if scim_filter is not None else None)
            or (search_request.sort_by is not None and names_members(search_request.sort_by))
        )
        loaded: list[Resource[Any]] = []
        for resource_type in resource_types:
            kind = self._kind(resource_type)
            if kind == CATALOGUE:
                loaded += self._catalogue(resource_type)
                continue
            rows = await self._rows(kind, [*self._live(kind), *conditions])
            loaded += await self._resources(resource_type, rows, with_members=with_members)
        loaded.sort(key=created_then_id)
        found = [r for r in loaded if scim_filter is None or scim_filter.match(r)]
        return page_of(search_request.sort(found), search_request)

    async def _rows(
        self,
        kind: str,
        where: list[ColumnElement[bool]],
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
        if self._kind(resource_type) == USER:
            return [self._user_resource(resource_type, cast(Identity, row)) for row in rows]
        members = await self._members_of([row.id for row in rows]) if with_members else {}
        return [
            self._group_resource(resource_type, cast(ScimGroup, row), members.get(row.id, []))
            for row in rows
        ]
