"""SqlScimStorage: scim2-server's storage contract on SQLite and PostgreSQL, then Usher's rules."""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scim2_models import (
    InvalidValueException,
    NotFoundException,
    ScimProvider,
    UniquenessException,
)
from scim2_server.storage import ScimStorage
from scim2_server.testing import AsyncScimStorageContract, BlockingStorage
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.jobs.state import ensure_pending
from engine.scim.columns import tombstone
from engine.scim.storage import SqlScimStorage, default_provider
from engine.storage.db import Database
from engine.storage.models import Identity, Job, JobStatus, Membership, ScimGroup, new_id
from tests.databases import Backend
from tests.scim.directory import (
    Directory,
    RecordingMarker,
    StatementLog,
    add_integration,
    insert_identities,
    open_directory,
    rows_written,
)


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
    queued = await ensure_pending(directory.session, directory.integration_id, group_id=group.id)
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
