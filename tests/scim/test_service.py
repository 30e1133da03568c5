"""serve_scim without HTTP: authentication first, one commit, the jobs handed back to enqueue."""

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from scim2_models import PayloadTooLargeException
from sqlmodel import select

from engine.apps.integrations import create_integration, rotate_token
from engine.constants import SCIM_BUSY_RETRY_AFTER_S
from engine.scim.provider import ScimServices
from engine.scim.service import BUSY, Served, serve_scim
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Identity, ScimRequest
from tests.databases import Backend, migrate
from tests.harness import ROOT
from tests.scim.conftest import SCIM_JSON, USER_SCHEMA
from tests.scim.directory import StatementLog, recording

BASE_URL = "https://usher.example/scim/v2"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Return Settings reading the real app templates."""
    return Settings(data_dir=tmp_path_factory.mktemp("service"), flows_dir=ROOT / "flows")


@pytest.fixture(scope="module")
def services(settings: Settings) -> ScimServices:
    """Build the SCIM services once for the module."""
    return ScimServices(settings)


async def unread() -> bytes:
    """Stand for a body that must not be read: the request is refused before."""
    raise AssertionError("the body was read before the integration was authenticated")


async def empty() -> bytes:
    """Stand for the empty body of a GET."""
    return b""


def body_of(payload: object) -> Callable[[], Awaitable[bytes]]:
    """Return a reader of a JSON body."""

    async def read() -> bytes:
        return json.dumps(payload).encode()

    return read


async def serve(
    db: Database,
    services: ScimServices,
    settings: Settings,
    integration_id: str,
    token: str,
    method: str,
    path: str,
    read_body: Callable[[], Awaitable[bytes]],
    query: dict[str, str] | None = None,
) -> Served:
    """Serve one request with a bearer token, as the route would."""
    return await serve_scim(
        db,
        services,
        integration_id=integration_id,
        method=method,
        base_url=f"{BASE_URL}/{integration_id}",
        path=path,
        query=query or {},
        headers=[("authorization", f"Bearer {token}"), ("content-type", SCIM_JSON)],
        read_body=read_body,
    )


async def test_a_created_user_is_committed_and_its_job_handed_back(
    sqlite_database: Database, services: ScimServices, settings: Settings
) -> None:
    """A POST answers 201, its Identity is committed and its one job is returned to enqueue."""
    async with sqlite_database.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
    user = {"schemas": [USER_SCHEMA], "userName": "served@example.com"}

    served = await serve(
        sqlite_database, services, settings, integration.id, token, "POST", "Users", body_of(user)
    )

    assert int(served.response.status) == 201
    created = served.response.body
    assert created is not None
    assert (
        served.response.headers["Location"] == f"{BASE_URL}/{integration.id}/Users/{created['id']}"
    )
    async with sqlite_database.session() as session:
        assert await session.get(Identity, created["id"]) is not None
    assert [job.identity_id for job in served.jobs] == [created["id"]]


async def test_an_unknown_integration_and_a_bad_token_are_refused_alike_unread(
    sqlite_database: Database, services: ScimServices, settings: Settings
) -> None:
    """An unknown id and a wrong token both get the same 401, before the body is read."""
    async with sqlite_database.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )

    unknown = await serve(
        sqlite_database, services, settings, "no-such-id", token, "POST", "Users", unread
    )
    wrong = await serve(
        sqlite_database, services, settings, integration.id, "wrong", "POST", "Users", unread
    )

    assert int(unknown.response.status) == int(wrong.response.status) == 401
    assert unknown.response.body == wrong.response.body
    assert unknown.jobs == wrong.jobs == []


async def test_a_refused_request_commits_nothing_and_hands_back_no_job(
    sqlite_database: Database, services: ScimServices, settings: Settings
) -> None:
    """A body the reader refuses is the SCIM error it raised; no job comes back."""
    async with sqlite_database.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )

    async def too_large() -> bytes:
        raise PayloadTooLargeException(detail="too large")

    served = await serve(
        sqlite_database, services, settings, integration.id, token, "POST", "Users", too_large
    )
    invalid = await serve(
        sqlite_database, services, settings, integration.id, token, "POST", "Users", body_of({})
    )

    assert int(served.response.status) == 413
    assert int(invalid.response.status) == 400
    assert served.jobs == invalid.jobs == []


def user_named(name: str) -> Callable[[], Awaitable[bytes]]:
    """Return the body of a POST /Users for one userName."""
    return body_of({"schemas": [USER_SCHEMA], "userName": name})


async def post_user(
    db: Database,
    services: ScimServices,
    settings: Settings,
    integration_id: str,
    token: str,
    name: str,
) -> Served:
    """POST /Users one userName, as an IdP creates a user."""
    return await serve(
        db, services, settings, integration_id, token, "POST", "Users", user_named(name)
    )


def said(statements: StatementLog, start: str) -> list[str]:
    """Return the statements that begin with a verb or phrase, such as BEGIN IMMEDIATE."""
    return [sql for sql, _params, _many in statements.statements if sql.startswith(start)]


def reads_integration(statements: StatementLog) -> bool:
    """Tell whether any statement read the integration table."""
    return any("FROM integration" in sql for sql, _params, _many in statements.statements)


async def test_a_post_is_one_write_transaction_without_redundant_round_trips(
    sqlite_database: Database, settings: Settings
) -> None:
    """Once the integration is known, a POST /Users reads it no more, takes the write lock
    once, looks nothing up before its inserts (the unique index finds a taken userName, and
    a new user has no job yet), opens no savepoint, writes each row once with the commit
    and does not prune the log again."""
    services = ScimServices(settings)
    async with sqlite_database.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
    first = await post_user(
        sqlite_database, services, settings, integration.id, token, "first.post@example.com"
    )
    assert int(first.response.status) == 201

    with recording(sqlite_database) as statements:
        second = await post_user(
            sqlite_database, services, settings, integration.id, token, "second.post@example.com"
        )

    assert int(second.response.status) == 201 and len(second.jobs) == 1
    assert len(said(statements, "BEGIN")) == 1
    assert said(statements, "BEGIN IMMEDIATE") == ["BEGIN IMMEDIATE"]
    assert not reads_integration(statements)
    assert said(statements, "DELETE FROM scim_request") == []
    assert len(said(statements, "INSERT INTO scim_request")) == 1
    assert said(statements, "SAVEPOINT") == [], "a clash is found by the commit"
    assert len(said(statements, "INSERT INTO identity")) == 1
    assert said(statements, "UPDATE") == [], "the generation is bumped before the insert"
    selects = said(statements, "SELECT")
    assert all("FROM audit_event" in sql for sql in selects), "only the audit chain's head"


async def test_simultaneous_posts_of_one_username_create_one_user(
    database: Database, settings: Settings
) -> None:
    """Eight POSTs of one userName at once, in any case: the commit's unique index lets one
    in, and each of the others is a logged 409 uniqueness that names the userName."""
    services = ScimServices(settings)
    async with database.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
    names = ["Same.Time@example.com", "same.time@example.com"] * 4
    served = await asyncio.gather(
        *(post_user(database, services, settings, integration.id, token, name) for name in names)
    )
    statuses = sorted(int(s.response.status) for s in served)
    assert statuses == [201] + [409] * 7
    refused = [s.response.body for s in served if int(s.response.status) == 409]
    assert all(body["scimType"] == "uniqueness" for body in refused)
    assert all("userName" in body["detail"] for body in refused)
    assert sum(len(s.jobs) for s in served) == 1
    async with database.reader() as session:
        users = (
            await session.exec(select(Identity).where(Identity.integration_id == integration.id))
        ).all()
        logged = (
            await session.exec(
                select(ScimRequest).where(ScimRequest.integration_id == integration.id)
            )
        ).all()
    assert len(users) == 1
    assert sorted(row.status for row in logged) == statuses


async def test_a_write_the_busy_database_cannot_take_is_answered_503_to_retry(
    tmp_path: Path, settings: Settings
) -> None:
    """Another process holds SQLite's write lock past the busy timeout: the POST is answered
    503 with a Retry-After (an IdP sends it again), not 500, and nothing is half-written;
    sent again once the lock is free, it creates the user. Both answers are in the log."""
    path = tmp_path / "usher.db"
    await migrate(Backend(f"sqlite+aiosqlite:///{path}"))
    database = Database(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout_ms=200)
    services = ScimServices(settings)
    try:
        async with database.session() as session:
            integration, token = await create_integration(
                session, settings, app="acme", base_url="http://127.0.0.1:9"
            )
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            refused = await post_user(
                database, services, settings, integration.id, token, "busy.day@example.com"
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert int(refused.response.status) == 503 and refused.jobs == []
        assert refused.response.headers["Retry-After"] == str(SCIM_BUSY_RETRY_AFTER_S)
        assert refused.response.body is not None
        assert refused.response.body["detail"] == BUSY
        again = await post_user(
            database, services, settings, integration.id, token, "busy.day@example.com"
        )
        assert int(again.response.status) == 201 and len(again.jobs) == 1
        await services.close(database)
        async with database.reader() as session:
            logged = (await session.exec(select(ScimRequest.status))).all()
        assert sorted(logged) == [201, 503]
    finally:
        await database.dispose()


async def test_a_read_never_takes_the_write_lock_and_its_log_line_follows(
    sqlite_database: Database, settings: Settings
) -> None:
    """A filtered GET is one deferred read with no count query for its short page; its
    SCIM log line is written with the next batch of reads."""
    services = ScimServices(settings)
    async with sqlite_database.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
    created = await post_user(
        sqlite_database, services, settings, integration.id, token, "looked.up@example.com"
    )
    assert int(created.response.status) == 201
    look_up = {"filter": 'userName eq "looked.up@example.com"'}

    with recording(sqlite_database) as statements:
        found = await serve(
            sqlite_database,
            services,
            settings,
            integration.id,
            token,
            "GET",
            "Users",
            empty,
            query=look_up,
        )

    assert int(found.response.status) == 200 and found.response.body is not None
    assert found.response.body["totalResults"] == 1
    assert said(statements, "BEGIN") == ["BEGIN"]
    assert said(statements, "INSERT") == said(statements, "DELETE") == []
    assert not any("count(" in sql for sql, _params, _many in statements.statements)

    await services.close(sqlite_database)
    async with sqlite_database.reader() as session:
        lines = (
            await session.exec(
                select(ScimRequest.method, ScimRequest.status).where(
                    ScimRequest.integration_id == integration.id
                )
            )
        ).all()
    assert sorted(lines) == [("GET", 200), ("POST", 201)]


async def test_a_new_token_works_at_once_though_the_old_one_was_known(
    sqlite_database: Database, settings: Settings
) -> None:
    """The process knew the integration's old token hash: the rotated token, which does not
    match it, is checked against the database and served at once."""
    services = ScimServices(settings)
    async with sqlite_database.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
    before = await serve(
        sqlite_database, services, settings, integration.id, token, "GET", "Users", empty
    )
    assert int(before.response.status) == 200
    async with sqlite_database.session() as session:
        new_token = await rotate_token(session, integration.id, actor="test")

    after = await serve(
        sqlite_database, services, settings, integration.id, new_token, "GET", "Users", empty
    )
    old = await serve(
        sqlite_database, services, settings, integration.id, token, "GET", "Users", empty
    )

    assert int(after.response.status) == 200
    assert int(old.response.status) == 401
    await services.close(sqlite_database)
