"""A SCIM DELETE from Entra: deactivate and revoke by default, delete where opted in.

Entra's own payloads (fixtures/idp/entra); the real worker drives Chromium through Acme,
whose delete asks for a typed confirmation word (flows/acme/delete_user.yaml).
"""

import httpx

from engine.storage.db import Database
from engine.storage.models import JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import filled
from tests.e2e.support import ran, roles, settle, wait_job
from tests.harness import Connected, Usher


async def test_delete_deactivates_and_revokes_then_deletes_where_opted_in(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Default: the account stays, off, without Usher's grants; opted in: it is gone."""
    kept_mail, gone_mail = "kept.delete@example.com", "gone.delete@example.com"
    scim = {"Authorization": f"Bearer {connected.token}"}
    operator = {"Authorization": f"Bearer {connected.operator}"}
    async with (
        httpx.AsyncClient(base_url=connected.scim_url, headers=scim, timeout=30) as idp,
        httpx.AsyncClient(base_url=usher.api, headers=operator, timeout=30) as api,
    ):

        async def call(method: str, path: str, body: dict | None = None) -> dict:
            answer = await idp.request(method, path, json=body)
            assert answer.status_code < 300, answer.text
            return answer.json() if answer.content else {}

        async def editor(upn: str, oid: str) -> str:
            body = filled(
                "entra", "create_user", upn=upn, given="Del", family="Entra", object_id=oid
            )
            identity = (await call("POST", "/Users", body))["id"]
            assert (await wait_job(usher_db, identity)).status == JobStatus.succeeded
            role = filled("entra", "add_app_roles", role="editor", role_name="Editor")
            await call("PATCH", f"/Users/{identity}", role)
            await settle(usher_db, connected.id, identity, 1)
            assert roles(acme, upn) == {"Editor"}
            return identity

        kept = await editor(kept_mail, "d3l-kept")
        await call("DELETE", f"/Users/{kept}")
        jobs = await settle(usher_db, connected.id, kept, 2)
        assert await ran(usher_db, jobs) == [
            ("deactivate_user", None),
            ("revoke_entitlement", "editor"),
        ]
        (account,) = acme.state.users_with_email(kept_mail)
        assert not account.active and account.roles == set(), "kept, off, without Editor"

        opted = await api.put(
            f"/api/integrations/{connected.id}/ownership", json={"delete_users": True}
        )
        assert opted.status_code == 200 and opted.json()["delete_users"], opted.text
        gone = await editor(gone_mail, "d3l-gone")
        key = acme.state.users_with_email(gone_mail)[0].id
        await call("DELETE", f"/Users/{gone}")
        jobs = await settle(usher_db, connected.id, gone, 2)
        assert await ran(usher_db, jobs) == [("delete_user", None)]
        assert acme.state.users_with_email(gone_mail) == [], "the account is gone from Acme"
        assert acme.state.get(key) is None
        assert len(acme.state.users_with_email(kept_mail)) == 1, "the other account is untouched"
