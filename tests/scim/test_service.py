"""serve_scim without HTTP: authentication first, one commit, the jobs handed back to enqueue."""

import json
from collections.abc import Awaitable, Callable

import pytest
from scim2_models import PayloadTooLargeException

from engine.apps.integrations import create_integration
from engine.scim.provider import ScimServices
from engine.scim.service import Served, serve_scim
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Identity
from tests.harness import ROOT
from tests.scim.conftest import SCIM_JSON, USER_SCHEMA

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
) -> Served:
    """Serve one request with a bearer token, as the route would."""
    return await serve_scim(
        db,
        services,
        settings,
        integration_id=integration_id,
        method=method,
        base_url=f"{BASE_URL}/{integration_id}",
        path=path,
        query={},
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
