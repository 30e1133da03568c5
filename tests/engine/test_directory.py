"""SqlScimStorage: scim2-server's storage contract on SQLite and PostgreSQL, then Usher's rules."""

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from scim2_models import (
    InvalidFilterException,
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
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.service import ScimService
from scim2_server.storage import ScimStorage
from scim2_server.testing import AsyncScimStorageContract, BlockingStorage
from scim2_server.utils import parametrize
from sqlalchemy import event, insert, text
from sqlalchemy.engine import Engine
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.template import Entitlement
from engine.jobs.outbox import ensure_queued_job
from engine.scim.provider import build_provider
from engine.scim.storage import SqlScimStorage, default_provider, tombstone
from engine.storage.db import Database
from engine.storage.models import (
    Identity,
    Integration,
    Job,
    JobStatus,
    Membership,
    ScimGroup,
    new_id,
    utcnow,
)

POSTGRES_ENV = "USHER_TEST_POSTGRES_URL"
POSTGRES_DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BASE_URL = "https://usher.example/scim/v2/acme"


@dataclass(frozen=True)
class Backend:
    """A migrated database this test run owns: a SQLite file, or its own PostgreSQL schema."""

    url: str
    schema: str | None = None

    def database(self) -> Database:
        """Open a Database whose connections see this run's tables."""
        database = Database(self.url)
        if self.schema is not None:
            listener = partial(use_schema, self.schema)
            event.listen(database.engine.sync_engine, "do_connect", listener)
        return database


def use_schema(
    schema: str, _dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]
) -> None:
    """Open PostgreSQL connections on this run's schema: a startup setting no rollback undoes."""
    cparams["server_settings"] = {"search_path": schema}


@dataclass
class UserCall:
    """One `user_changed` call, as the recording marker saw it."""

    identity_id: str
    before: dict[str, Any] | None
    deleted: bool
    resource: dict[str, Any]


@dataclass
class RecordingMarker:
    """A ChangeMarker that records its calls, standing in for the Outbox."""

    users: list[UserCall] = field(default_factory=list)
    groups: list[tuple[str, set[str]]] = field(default_factory=list)

    async def user_changed(self, identity: Identity, before: dict | None) -> None:
        """Record a user change."""
        deleted = identity.deleted_at is not None
        self.users.append(UserCall(identity.id, before, deleted, identity.resource))

    async def group_changed(self, group: ScimGroup, changed_member_ids: set[str]) -> None:
        """Record a group change."""
        self.groups.append((group.id, set(changed_member_ids)))


async def migrate(backend: Backend) -> None:
    """Create this run's tables."""
    database = backend.database()
    try:
        await database.migrate()
    finally:
        await database.dispose()


async def add_integration(session: AsyncSession) -> str:
    """Insert an integration and return its id."""
    integration = Integration(
        app="acme", name="Acme", base_url="https://acme.example", scim_token_hash=new_id()
    )
    session.add(integration)
    await session.flush()
    return integration.id


@pytest.fixture(scope="session")
def provider() -> ScimProvider:
    """Return Usher's provider: User with the enterprise extension, Group, the catalogue."""
    return build_provider()


@pytest.fixture(scope="session")
async def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """Return a migrated SQLite file for this run."""
    backend = Backend(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('directory') / 'usher.db'}")
    await migrate(backend)
    return backend


@pytest.fixture(scope="session")
async def postgresql_backend() -> AsyncIterator[Backend]:
    """Return a fresh migrated PostgreSQL schema; fail, never skip, when the server is down."""
    url = os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT_URL)
    if url == "none":
        pytest.skip(f"{POSTGRES_ENV}=none")
    backend = Backend(url, schema=f"usher_directory_{uuid.uuid4().hex[:12]}")
    admin = Database(url)
    try:
        async with admin.engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{backend.schema}"'))
    except Exception as exc:
        await admin.dispose()
        pytest.fail(
            f"PostgreSQL at {url} is unreachable ({exc!r}). Start it, point {POSTGRES_ENV} "
            f"at another server, or set {POSTGRES_ENV}=none to leave PostgreSQL out.",
            pytrace=False,
        )
    try:
        await migrate(backend)
        yield backend
    finally:
        async with admin.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{backend.schema}" CASCADE'))
        await admin.dispose()


@dataclass
class OpenStorage:
    """A storage over a fresh integration, in a session that is rolled back at the end."""

    database: Database
    session: AsyncSession
    storage: SqlScimStorage

    async def close(self) -> None:
        """Roll the test's writes back and close every connection."""
        await self.session.close()
        await self.database.dispose()


async def open_storage(backend: Backend, provider: ScimProvider) -> OpenStorage:
    """Open a storage bound to a new integration of a backend."""
    database = backend.database()
    session = database.sessions()
    integration_id = await add_integration(session)
    storage = SqlScimStorage(session, integration_id, RecordingMarker(), provider=provider)
    return OpenStorage(database, session, storage)


class SqlStorageContract(AsyncScimStorageContract):
    """scim2-server's contract, each test on its own event loop, engine and integration.

    The contract runs every coroutine on an `asyncio.Runner` of its own, and database
    connections belong to the loop that opened them: `storage` opens the engine inside that
    runner and disposes of it there. Subclasses give the `backend`.
    """

    @pytest.fixture
    def provider(self) -> ScimProvider:
        """Share one default provider: composing its models costs more than a whole test."""
        return default_provider()

    @pytest.fixture
    def storage(self, backend: Backend, provider: ScimProvider) -> Iterator[ScimStorage]:
        """Return the storage the contract drives, blocking on the test's own runner."""
        with asyncio.Runner() as runner:
            opened = runner.run(open_storage(backend, provider))
            try:
                yield BlockingStorage(opened.storage, runner)
            finally:
                runner.run(opened.close())


class TestSqliteContract(SqlStorageContract):
    """The contract on SQLite."""

    @pytest.fixture
    def backend(self, sqlite_backend: Backend) -> Backend:
        """Use the SQLite file."""
        return sqlite_backend


class TestPostgresqlContract(SqlStorageContract):
    """The contract on PostgreSQL."""

    @pytest.fixture
    def backend(self, postgresql_backend: Backend) -> Backend:
        """Use the PostgreSQL schema."""
        return postgresql_backend


@pytest.fixture(scope="session")
async def sqlite_database(sqlite_backend: Backend) -> AsyncIterator[Database]:
    """Return the SQLite database the async tests share."""
    database = sqlite_backend.database()
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def postgresql_database(postgresql_backend: Backend) -> AsyncIterator[Database]:
    """Return the PostgreSQL database the async tests share."""
    database = postgresql_backend.database()
    yield database
    await database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Database:
    """Run a test on each backend."""
    return request.getfixturevalue(f"{request.param}_database")


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    """Yield a session that is rolled back after the test."""
    async with database.session() as session:
        yield session


@dataclass
class Directory:
    """One integration's storage, with its marker and the helpers the tests share."""

    session: AsyncSession
    provider: ScimProvider
    integration_id: str
    marker: RecordingMarker
    storage: SqlScimStorage

    @property
    def user_type(self) -> ResourceType:
        """Return the User resource type."""
        return next(rt for rt in self.provider.resource_types if rt.id == "User")

    @property
    def group_type(self) -> ResourceType:
        """Return the Group resource type."""
        return next(rt for rt in self.provider.resource_types if rt.id == "Group")

    async def user(self, user_name: str, **values: Any) -> Any:
        """Create a User."""
        model = self.provider.model_for(self.user_type)
        return await self.storage.create(self.user_type, model(user_name=user_name, **values))

    async def group(self, display_name: str, *members: Resource[Any]) -> Any:
        """Create a Group of the members given."""
        model = self.provider.model_for(self.group_type)
        data = {"displayName": display_name, "members": [{"value": m.id} for m in members]}
        return await self.storage.create(self.group_type, model.model_validate(data))

    async def find(self, resource_type: ResourceType, **parameters: Any) -> list[Any]:
        """Search one resource type and return the resources found."""
        model = self.provider.model_for(resource_type)
        request = parametrize(SearchRequest, model)(**parameters)
        return (await self.storage.search([resource_type], request)).resources


async def open_directory(session: AsyncSession, provider: ScimProvider) -> Directory:
    """Open a Directory over a new integration."""
    integration_id = await add_integration(session)
    marker = RecordingMarker()
    storage = SqlScimStorage(session, integration_id, marker, provider=provider)
    return Directory(session, provider, integration_id, marker, storage)


@pytest.fixture
async def directory(session: AsyncSession, provider: ScimProvider) -> Directory:
    """Return a Directory over a new integration."""
    return await open_directory(session, provider)


@dataclass
class StatementLog:
    """The SQL statements an engine ran, with their parameters."""

    statements: list[tuple[str, Any, bool]] = field(default_factory=list)

    def record(self, *args: Any) -> None:
        """Keep one statement: `before_cursor_execute` passes conn, cursor, SQL, params, ..."""
        _conn, _cursor, statement, parameters, _context, executemany = args
        self.statements.append((statement, parameters, executemany))

    def on(self, table: str, verb: str) -> list[tuple[str, Any, bool]]:
        """Return the statements of a verb on a table, such as INSERT on membership."""
        return [
            s
            for s in self.statements
            if s[0].lstrip().upper().startswith(verb) and f" {table}" in s[0].lower()
        ]


@contextmanager
def recording(database: Database) -> Iterator[StatementLog]:
    """Record the statements a database's engine runs inside the block."""
    log = StatementLog()
    engine: Engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", log.record)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", log.record)


@pytest.fixture
def statements(database: Database) -> Iterator[StatementLog]:
    """Record the statements the engine runs during a test."""
    with recording(database) as log:
        yield log


def rows_written(statement: tuple[str, Any, bool]) -> int:
    """Return how many rows one INSERT statement carries."""
    _sql, parameters, executemany = statement
    return len(parameters) if executemany else 1


async def insert_identities(session: AsyncSession, integration_id: str, count: int) -> None:
    """Insert identities in bulk, straight into the table, for the tests needing thousands."""
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "integration_id": integration_id,
            "user_name": f"User-{n}@Example.com",
            "user_name_key": f"user-{n}@example.com",
            "external_id": f"ext-{n}",
            "resource": {"userName": f"User-{n}@Example.com", "externalId": f"ext-{n}"},
            "created_at": now,
            "updated_at": now,
        }
        for n in range(count)
    ]
    await session.exec(insert(Identity), params=rows)


async def test_user_name_is_unique_whatever_its_case(directory: Directory) -> None:
    """`BJensen` and `bjensen` clash on create and update, and `userName eq` finds either."""
    await directory.user("BJensen")
    other = await directory.user("jsmith")
    other.user_name = "BJENSEN"

    with pytest.raises(UniquenessException):
        await directory.user("bjensen")
    with pytest.raises(UniquenessException):
        await directory.storage.update(directory.user_type, other)

    found = await directory.find(directory.user_type, filter='userName eq "bJENSEN"')
    assert [user.user_name for user in found] == ["BJensen"]
    assert (await directory.storage.get(directory.user_type, other.id)).user_name == "jsmith"


async def test_a_unique_constraint_race_is_a_409_and_the_session_lives_on(
    directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the check misses a concurrent insert, the DB constraint answers 409, cleanly."""
    await directory.user("bjensen")
    other = await directory.user("jsmith")

    async def blind(columns: dict[str, Any], own_id: str | None) -> str:
        """Let every userName through, as a check racing a concurrent insert would."""
        return "taken"

    monkeypatch.setattr(directory.storage, "_ensure_user_name_free", blind)
    with pytest.raises(UniquenessException):
        await directory.user("BJensen")
    other.user_name = "BJENSEN"
    with pytest.raises(UniquenessException):
        await directory.storage.update(directory.user_type, other)

    assert (await directory.storage.get(directory.user_type, other.id)).user_name == "jsmith"
    assert len(await directory.find(directory.user_type)) == 2


async def test_group_display_name_is_unique_whatever_its_case(directory: Directory) -> None:
    """Two groups of an integration cannot be `Admins` and `admins`."""
    await directory.group("Admins")

    with pytest.raises(UniquenessException):
        await directory.group("admins")

    found = await directory.find(directory.group_type, filter='displayName eq "ADMINS"')
    assert [group.display_name for group in found] == ["Admins"]


async def test_the_marker_sees_each_user_change(directory: Directory) -> None:
    """Create passes no `before`, update and delete pass the resource as it was."""
    user = await directory.user("bjensen", display_name="Babs")
    user.display_name = "Barbara"
    await directory.storage.update(directory.user_type, user)
    await directory.storage.delete(directory.user_type, user.id)

    created, updated, deleted = directory.marker.users
    assert (created.identity_id, created.before, created.deleted) == (user.id, None, False)
    assert created.resource["displayName"] == "Babs"
    assert updated.before is not None and updated.before["displayName"] == "Babs"
    assert (updated.resource["displayName"], updated.deleted) == ("Barbara", False)
    assert deleted.before is not None and deleted.before["displayName"] == "Barbara"
    assert deleted.deleted


async def test_the_marker_sees_who_joined_or_left_a_group(directory: Directory) -> None:
    """Each group change names the members added or removed; a rename names none."""
    alice, bob, carol = [await directory.user(name) for name in ("alice", "bob", "carol")]
    group = await directory.group("staff", alice, bob)

    group.display_name = "Staff"
    group = await directory.storage.update(directory.group_type, group)
    group.members.append(group.members[0].model_copy(update={"value": carol.id}))
    group = await directory.storage.update(directory.group_type, group)
    group.members = [m for m in group.members if m.value != alice.id]
    group = await directory.storage.update(directory.group_type, group)
    await directory.storage.delete(directory.group_type, group.id)

    assert directory.marker.groups == [
        (group.id, {alice.id, bob.id}),
        (group.id, set()),
        (group.id, {carol.id}),
        (group.id, {alice.id}),
        (group.id, {bob.id, carol.id}),
    ]


async def test_a_group_member_carries_a_relative_ref_and_its_type(directory: Directory) -> None:
    """Members read back with `type` and a `$ref` relative to the SCIM root."""
    alice = await directory.user("alice")
    group = await directory.group("staff", alice)

    (member,) = (await directory.storage.get(directory.group_type, group.id)).members
    assert (member.value, member.type, member.ref) == (alice.id, "User", f"Users/{alice.id}")


async def test_adding_one_member_to_a_big_group_writes_one_row(
    directory: Directory, statements: StatementLog
) -> None:
    """A 2,000-member group gaining one member gets one Membership INSERT, nothing else."""
    await insert_identities(directory.session, directory.integration_id, 2000)
    users = await directory.find(directory.user_type)
    newcomer = await directory.user("newcomer")
    group = await directory.group("everyone", *users)
    statements.statements.clear()

    group.members.append(group.members[0].model_copy(update={"value": newcomer.id}))
    await directory.storage.update(directory.group_type, group)

    (inserted,) = statements.on("membership", "INSERT")
    assert rows_written(inserted) == 1
    assert statements.on("membership", "DELETE") == []
    assert statements.on("membership", "UPDATE") == []
    count = select(func.count()).select_from(Membership).where(Membership.group_id == group.id)
    assert (await directory.session.exec(count)).one() == 2001


async def test_a_group_read_without_members_does_not_load_them(
    directory: Directory, statements: StatementLog
) -> None:
    """`excludedAttributes=members` reads the group row only, as Entra asks for."""
    alice = await directory.user("alice")
    group = await directory.group("staff", alice)
    statements.statements.clear()

    await directory.find(directory.group_type, excluded_attributes=["members"])
    await directory.storage.get(
        directory.group_type,
        group.id,
        response_parameters=parametrize(
            ResponseParameters, directory.provider.model_for(directory.group_type)
        ).model_validate({"excludedAttributes": "members"}),
    )

    assert [s for s in statements.statements if "membership" in s[0].lower()] == []


async def test_lookups_by_user_name_and_external_id_use_an_index(
    sqlite_database: Database, provider: ScimProvider
) -> None:
    """Among 20,000 users, `userName eq` and `externalId eq` find one row through an index."""
    with recording(sqlite_database) as statements:
        async with sqlite_database.session() as session:
            directory = await open_directory(session, provider)
            await insert_identities(session, directory.integration_id, 20_000)
            for scim_filter, column in [
                ('userName eq "USER-12345@example.COM"', "user_name_key"),
                ('externalId eq "ext-12345"', "external_id"),
            ]:
                statements.statements.clear()
                found = await directory.find(directory.user_type, filter=scim_filter)
                assert [user.user_name for user in found] == ["User-12345@Example.com"]
                for sql, parameters, _many in statements.on("identity", "SELECT"):
                    plan = await explain(session, sql, parameters)
                    assert f"{column}=?" in plan, plan
                    assert "SCAN identity" not in plan, plan


async def explain(session: AsyncSession, sql: str, parameters: Any) -> str:
    """Return SQLite's query plan of a statement, one line per step."""
    connection = await session.connection()
    result = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)
    return "\n".join(str(row[-1]) for row in result)


async def test_integrations_are_isolated(session: AsyncSession, provider: ScimProvider) -> None:
    """Two integrations may share a userName and a group name, and never see each other's ids."""
    first = await open_directory(session, provider)
    second = await open_directory(session, provider)
    theirs = await first.user("bjensen")
    their_group = await first.group("staff", theirs)
    ours = await second.user("BJensen")
    await second.group("Staff", ours)

    for resource_type, resource_id in [
        (second.user_type, theirs.id),
        (second.group_type, their_group.id),
    ]:
        with pytest.raises(NotFoundException):
            await second.storage.get(resource_type, resource_id)
        with pytest.raises(NotFoundException):
            await second.storage.delete(resource_type, resource_id)
    with pytest.raises(NotFoundException):
        await second.storage.update(second.user_type, theirs)
    with pytest.raises(InvalidValueException):
        await second.group("mixed", theirs)
    found = await second.find(second.user_type, filter=f'id eq "{theirs.id}"')
    assert found == []
    assert [u.id for u in await second.find(second.user_type)] == [ours.id]


async def test_a_deleted_user_is_gone_and_frees_its_user_name(directory: Directory) -> None:
    """A soft-deleted user is NotFound, unlisted, out of its groups, and its userName is free."""
    user = await directory.user("bjensen", external_id="E1")
    group = await directory.group("staff", user)

    await directory.storage.delete(directory.user_type, user.id)

    with pytest.raises(NotFoundException):
        await directory.storage.get(directory.user_type, user.id)
    assert await directory.find(directory.user_type) == []
    assert await directory.find(directory.user_type, filter='externalId eq "E1"') == []
    assert await directory.find(directory.user_type, filter="userName pr") == []
    stored_group = await directory.storage.get(directory.group_type, group.id)
    assert stored_group.members is None
    assert stored_group.meta.version != group.meta.version
    identity = await directory.session.get(Identity, user.id)
    assert identity is not None and identity.deleted_at is not None
    assert identity.user_name_key == tombstone(user.id)
    assert (await directory.user("BJensen")).id != user.id


async def test_a_deleted_group_is_hidden_and_keeps_its_row_for_its_job(
    directory: Directory,
) -> None:
    """A deleted group: NotFound, unlisted, its name free; row, members and jobs kept."""
    alice = await directory.user("alice")
    group = await directory.group("Staff", alice)
    queued = await ensure_queued_job(directory.session, directory.integration_id, group_id=group.id)
    await directory.session.flush()

    await directory.storage.delete(directory.group_type, group.id)

    with pytest.raises(NotFoundException):
        await directory.storage.get(directory.group_type, group.id)
    assert await directory.find(directory.group_type) == []
    assert await directory.find(directory.group_type, filter='displayName eq "Staff"') == []
    row = await directory.session.get(ScimGroup, group.id)
    assert row is not None and row.deleted_at is not None
    assert row.display_name_key == tombstone(group.id)
    memberships = select(Membership.member_id).where(Membership.group_id == group.id)
    assert (await directory.session.exec(memberships)).all() == [alice.id]
    assert (await directory.session.get(Job, queued.id)).status == JobStatus.queued
    assert directory.marker.groups[-1] == (group.id, {alice.id})
    assert (await directory.group("staff", alice)).id != group.id
    with pytest.raises(InvalidValueException):
        await directory.group("nested", group)
    with pytest.raises(NotFoundException):
        await directory.storage.delete(directory.group_type, group.id)


async def test_the_entitlement_catalogue_is_served_read_only(
    session: AsyncSession, provider: ScimProvider
) -> None:
    """Multi entitlements list as Okta Entitlements, exclusive ones as Roles; no writes."""
    catalogue = [
        Entitlement(value="viewer", label="Viewer"),
        Entitlement(value="plan-pro", label="Pro plan", kind="exclusive", rank=1),
    ]
    integration_id = await add_integration(session)
    storage = SqlScimStorage(
        session, integration_id, RecordingMarker(), provider=provider, catalogue=catalogue
    )
    types = {rt.id: rt for rt in provider.resource_types}
    model = provider.model_for(types["Role"])

    entitlements = await storage.search([types["Entitlement"]], SearchRequest(start_index=1))
    roles = await storage.search([types["Role"]], SearchRequest(start_index=1))
    role = await storage.get(types["Role"], "plan-pro")

    assert [(e.id, e.display_name, e.type) for e in entitlements.resources] == [
        ("viewer", "Viewer", "Entitlement")
    ]
    assert [r.id for r in roles.resources] == ["plan-pro"] and role.display_name == "Pro plan"
    with pytest.raises(NotFoundException):
        await storage.get(types["Role"], "viewer")
    with pytest.raises(MethodNotAllowedException):
        await storage.create(types["Role"], model(display_name="Root"))


async def test_text_sql_cannot_hold_is_refused_or_matches_nothing(directory: Directory) -> None:
    """A NUL or a lone surrogate in an indexed column: 400 on write, no match on read."""
    await directory.user("plain")
    model = directory.provider.model_for(directory.group_type)

    for odd in ("nul\x00name", "half\ud800"):
        with pytest.raises(InvalidValueException):
            await directory.user(odd)
        with pytest.raises(InvalidValueException):
            await directory.user("other", external_id=odd)
        with pytest.raises(InvalidValueException):
            await directory.storage.create(
                directory.group_type,
                model.model_validate({"displayName": "g", "members": [{"value": odd}]}),
            )
        for attribute in ("userName", "externalId", "id"):
            assert (
                await directory.find(
                    directory.user_type, filter=f"{attribute} eq {json.dumps(odd)}"
                )
                == []
            )
        with pytest.raises(NotFoundException):
            await directory.storage.get(directory.user_type, odd)
        with pytest.raises(NotFoundException):
            await directory.storage.get(directory.group_type, odd)
    assert [u.user_name for u in await directory.find(directory.user_type)] == ["plain"]
    titled = await directory.user("titled", title="a\x00b")
    assert (await directory.storage.get(directory.user_type, titled.id)).title == "a\x00b"


async def test_an_unknown_member_is_refused(directory: Directory) -> None:
    """A member id the integration does not hold is a 400, not a dangling row."""
    model = directory.provider.model_for(directory.group_type)
    group = model.model_validate({"displayName": "staff", "members": [{"value": new_id()}]})

    with pytest.raises(InvalidValueException):
        await directory.storage.create(directory.group_type, group)


async def test_inactive_users_are_read_and_listed(directory: Directory) -> None:
    """An inactive user is read and listed like any other."""
    user = await directory.user("bjensen", active=False)

    assert (await directory.storage.get(directory.user_type, user.id)).active is False
    assert [u.id for u in await directory.find(directory.user_type)] == [user.id]


async def test_scim2_server_refuses_an_unknown_filter_attribute(directory: Directory) -> None:
    """An unknown attribute is a 400 invalidFilter before the storage, never "match all"."""
    await directory.user("bjensen")
    handler = AsyncScimHandler(ScimService(directory.provider), directory.storage)
    request = ScimRequest("GET", BASE_URL, "/Users", query={"filter": 'badAttr eq "x"'})

    with pytest.raises(InvalidFilterException):
        await handler.handle(request)


async def test_entra_membership_probe_and_patch_through_scim2_server(directory: Directory) -> None:
    """Entra's PATCH add member, then its `id eq and members eq` probe without members."""
    alice, bob = await directory.user("alice"), await directory.user("bob")
    group = await directory.group("staff", alice)
    handler = AsyncScimHandler(ScimService(directory.provider), directory.storage)
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": bob.id}]}],
    }

    patched = await handler.handle(
        ScimRequest(
            "PATCH",
            BASE_URL,
            f"/Groups/{group.id}",
            headers={"Content-Type": "application/scim+json"},
            body=json.dumps(patch).encode(),
        )
    )
    read = await handler.handle(ScimRequest("GET", BASE_URL, f"/Groups/{group.id}"))
    probe = await handler.handle(
        ScimRequest(
            "GET",
            BASE_URL,
            "/Groups",
            query={
                "filter": f'id eq "{group.id}" and members eq "{bob.id}"',
                "excludedAttributes": "members",
            },
        )
    )

    assert patched.status == 204
    assert {m["value"] for m in read.body["members"]} == {alice.id, bob.id}
    assert f"{BASE_URL}/Users/{bob.id}" in {m["$ref"] for m in read.body["members"]}
    assert probe.body["totalResults"] == 1
    assert "members" not in probe.body["Resources"][0]
    assert directory.marker.groups[-1] == (group.id, {bob.id})
