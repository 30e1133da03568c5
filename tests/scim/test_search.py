"""SCIM search over SQL: indexed look-ups, members loaded only when kept, scim2-server's filters."""

import json
from typing import Any

import pytest
from scim2_models import InvalidFilterException, ResponseParameters, ScimProvider
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.service import ScimService
from scim2_server.utils import parametrize
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.storage.db import Database
from tests.scim.directory import (
    BASE_URL,
    Directory,
    StatementLog,
    insert_identities,
    open_directory,
    recording,
)


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
