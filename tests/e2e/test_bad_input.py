"""Bad input: a SCIM error and nothing stored; a page unlike the flow fails with evidence."""

import httpx
from sqlmodel import func, select

from engine.apps.integrations import create_integration
from engine.storage.db import Database
from engine.storage.models import Identity, Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import connect_without_secrets, job_detail, scim_post, wait_job
from tests.harness import Connected, Usher, connect_acme

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


async def identities(db: Database, integration_id: str) -> int:
    """Count an integration's stored users."""
    async with db.session() as session:
        query = select(func.count()).where(Identity.integration_id == integration_id)
        return (await session.exec(query)).one()


async def test_refused_tokens_store_nothing_and_reveal_nothing(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """No token, a wrong one, another integration's: 401 SCIM error with WWW-Authenticate."""
    async with usher_db.session() as session:
        other, other_token = await create_integration(
            session, usher.settings, app="acme", base_url=acme.url
        )
    body = okta_user("mallory@example.com")
    attempts = [{}, {"Authorization": "Bearer usc_wrong"}, {"Authorization": "non-token"}]
    attempts.append({"Authorization": f"Bearer {other_token}"})
    async with httpx.AsyncClient() as client:
        for headers in attempts:
            for method, path in (("POST", "/Users"), ("GET", "/Users"), ("GET", "/Users/x")):
                response = await client.request(
                    method, f"{connected.scim_url}{path}", json=body, headers=headers
                )
                assert response.status_code == 401, (headers, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.headers["content-type"].startswith("application/scim+json")
                error = response.json()
                assert error["schemas"] == [ERROR_SCHEMA] and error["status"] == "401"
                assert error["detail"]
                assert connected.id not in response.text and other.id not in response.text
        unknown = await client.get(
            f"{usher.api}/scim/v2/nope/Users", headers={"Authorization": f"Bearer {other_token}"}
        )
        assert unknown.status_code == 401
    assert await identities(usher_db, connected.id) == 0


async def test_malformed_and_invalid_users_are_400_and_store_nothing(
    usher: Usher, usher_db: Database, connected: Connected
) -> None:
    """Broken JSON and a User without userName: 400 SCIM errors naming the problem."""
    headers = {
        "Authorization": f"Bearer {connected.token}",
        "Content-Type": "application/scim+json",
    }
    async with httpx.AsyncClient() as client:
        broken = await client.post(
            f"{connected.scim_url}/Users", content=b'{"userName": ', headers=headers
        )
        assert broken.status_code == 400, broken.text
        assert broken.json()["schemas"] == [ERROR_SCHEMA]
        assert broken.json()["scimType"] == "invalidSyntax"

        nameless = okta_user("nameless@example.com")
        del nameless["userName"]
        invalid = await client.post(f"{connected.scim_url}/Users", json=nameless, headers=headers)
        assert invalid.status_code == 400, invalid.text
        assert invalid.json()["status"] == "400"
        assert "userName" in invalid.json()["detail"]

        wrong_type = okta_user("typed@example.com", "Ty", "Ped")
        wrong_type["active"] = {"no": "pe"}
        typed = await client.post(f"{connected.scim_url}/Users", json=wrong_type, headers=headers)
        assert typed.status_code == 400, typed.text
        assert "active" in typed.json()["detail"]
    assert await identities(usher_db, connected.id) == 0
    async with usher_db.session() as session:
        query = select(func.count()).where(Job.integration_id == connected.id)
        assert (await session.exec(query)).one() == 0


async def test_page_unlike_the_flow_fails_with_step_locator_url_and_screenshot(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """An app whose sign-in page is elsewhere: the job is parked, saying where, with evidence."""
    broken = await connect_acme(usher, usher_db, acme, path="/moved")
    response = await scim_post(broken, okta_user("gus.gone@example.com", "Gus", "Gone"))
    assert response.status_code == 201, response.text
    job = await wait_job(usher_db, response.json()["id"])
    assert job.status == JobStatus.blocked
    assert job.error is not None
    assert "'Type the username'" in job.error
    assert "label='Username'" in job.error
    assert f"{acme.url}/moved/login" in job.error

    detail = await job_detail(usher, broken, job.id)
    failed = [s for a in detail["actions"] for s in a["steps"] if s["status"] == "failed"]
    assert len(failed) == 1
    kinds = {e["kind"] for e in failed[0]["evidence"]}
    assert kinds == {"screenshot", "html", "console"}
    assert acme.state.users_with_email("gus.gone@example.com") == []


async def test_a_job_for_an_integration_without_secrets_says_which(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """No browser is started without the service account's secrets; the job names them."""
    unset = await connect_without_secrets(usher, usher_db, acme, connected)
    response = await scim_post(unset, okta_user("ola.open@example.com", "Ola", "Open"))
    assert response.status_code == 201, response.text
    job = await wait_job(usher_db, response.json()["id"])
    assert job.status == JobStatus.blocked
    assert job.error == (
        f"integration {unset.id} lacks secrets admin_username, admin_password, totp_seed:"
        " set them with `usher integrations set-secret`"
    )
    assert acme.state.logins == 0
