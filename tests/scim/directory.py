"""What the storage tests share: their databases, a recording marker, a directory, SQL logs."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from scim2_models import Resource, ResourceType, ScimProvider, SearchRequest
from scim2_server.utils import parametrize
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.scim.storage import SqlScimStorage
from engine.storage.db import Database
from engine.storage.models import Identity, Integration, ScimGroup, new_id, utcnow

BASE_URL = "https://usher.example/scim/v2/acme"


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


async def add_integration(session: AsyncSession) -> str:
    """Insert an integration and return its id."""
    integration = Integration(
        app="acme", name="Acme", base_url="https://acme.example", scim_token_hash=new_id()
    )
    session.add(integration)
    await session.flush()
    return integration.id


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
