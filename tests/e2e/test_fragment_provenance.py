"""A job that ran a fragment records which one ran and its SHA-256, beside the flow's."""

import hashlib

from engine.storage.db import Database
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import job_detail, scim_post, wait_job
from tests.harness import ROOT, Connected, Usher


def sha256(path: str) -> str:
    """Return the SHA-256 of a file under flows/acme."""
    return hashlib.sha256((ROOT / "flows" / "acme" / path).read_bytes()).hexdigest()


async def test_a_grant_records_the_fragment_it_used(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Create with a role: the grant ran open_account, whose hash is on its `use` step."""
    body = okta_user("frida.frag@example.com", "Frida", "Frag")
    body["entitlements"] = [{"value": "editor"}]
    response = await scim_post(connected, body)
    assert response.status_code == 201, response.text
    job = await wait_job(usher_db, response.json()["id"])
    assert job.status == "succeeded", job.error
    detail = await job_detail(usher, connected, job.id)
    grant = next(a for a in detail["actions"] if a["name"] == "grant_entitlement")
    assert grant["flow_sha256"] == sha256("grant_entitlement.yaml")
    fragment = sha256("_fragments/open_account.yaml")
    assert grant["fragment_sha256"] == {"open_account": fragment}
    create = next(a for a in detail["actions"] if a["name"] == "create_user")
    assert create["fragment_sha256"] == {}
    names = [s["name"] for s in grant["steps"]]
    assert names[:3] == [
        "Open and check the account",
        "Open the account",
        "It is the right account",
    ]
    use = grant["steps"][0]
    assert use["kind"] == "use" and use["status"] == "ok"
    assert (
        use["locator"] == f"fragment open_account sha256={sha256('_fragments/open_account.yaml')}"
    )
    assert acme.state.users_with_email("frida.frag@example.com")[0].roles == {"Editor"}
