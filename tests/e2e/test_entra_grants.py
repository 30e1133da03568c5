"""Entra in Acme: app roles merged with groups, ranks stepping down, a deleted group, an
account from before Usher, and the plan equal to what then ran.

Entra's own payloads (fixtures/idp/entra); the real worker drives Chromium through Acme.
"""

import httpx
from sqlmodel import select

from engine.storage.db import Database
from engine.storage.models import AppAccount, Job, JobStatus
from fixtures.acme.server import AcmeServer
from fixtures.idp import filled
from tests.e2e.support import ran, roles, settle, wait_job
from tests.harness import Connected, Usher


def plan_of(acme: AcmeServer, email: str) -> str:
    """Return the Acme plan of the account with that email."""
    (user,) = acme.state.users_with_email(email)
    return user.plan


async def test_entra_app_roles_and_groups_ranks_a_deleted_group_and_an_account_from_before(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """One Entra conversation end to end, each step's plan checked against what then ran."""
    pia_mail, bo_mail = "pia.entra@example.com", "bo.entra@example.com"
    acme.state.add_user(pia_mail, "Pia", "Before", roles={"Billing"})
    scim = {"Authorization": f"Bearer {connected.token}"}
    operator = {"Authorization": f"Bearer {connected.operator}"}
    async with (
        httpx.AsyncClient(base_url=connected.scim_url, headers=scim) as idp,
        httpx.AsyncClient(base_url=usher.api, headers=operator) as api,
    ):

        async def call(method: str, path: str, body: dict | None = None) -> dict:
            answer = await idp.request(method, path, json=body)
            assert answer.status_code < 300, answer.text
            return answer.json() if answer.content else {}

        async def user(upn: str, given: str, oid: str) -> str:
            body = filled(
                "entra", "create_user", upn=upn, given=given, family="Entra", object_id=oid
            )
            return (await call("POST", "/Users", body))["id"]

        async def group(name: str, oid: str) -> str:
            body = filled("entra", "create_group", name=name, object_id=oid)
            return (await call("POST", "/Groups", body))["id"]

        async def planned(user_id: str) -> tuple[list[tuple[str, str | None]], dict]:
            answer = await api.get(
                f"/api/integrations/{connected.id}/plan", params={"user": user_id}
            )
            assert answer.status_code == 200, answer.text
            (one,) = answer.json()["identities"]
            return [(a["name"], a["target"]) for a in one["actions"]], one

        pia = await user(pia_mail, "Pia", "0f3e-pia")
        bo = await user(bo_mail, "Bo", "0f3e-bo")
        for identity in (pia, bo):
            assert (await wait_job(usher_db, identity)).status == JobStatus.succeeded
        async with usher_db.session() as session:
            found = (
                await session.exec(select(AppAccount).where(AppAccount.identity_id == pia))
            ).one()
        assert found.observed_at is not None and found.active is None and found.entitlements == []
        assert len(acme.state.users_with_email(pia_mail)) == 1, "one account, the one from before"

        enterprise = await group("plan-enterprise", "0f3e-enterprise")
        pro = await group("Pro customers", "0f3e-pro")
        editors = await group("Editors EMEA", "editor")  # externalId equal to a value
        mapped = await api.post(
            f"/api/integrations/{connected.id}/mappings",
            json={"group": "0f3e-pro", "value": "plan-pro"},
        )
        assert mapped.status_code == 201, mapped.text
        both = {"first": pia, "second": bo}
        with usher.own_worker_paused():
            role = filled("entra", "add_app_roles", role="viewer", role_name="Viewer")
            await call("PATCH", f"/Users/{pia}", role)
            for gid in (enterprise, pro, editors):
                await call("PATCH", f"/Groups/{gid}", filled("entra", "add_members", **both))
            expected, shown = await planned(pia)
        assert expected == [
            ("grant_entitlement", "editor"),
            ("grant_entitlement", "viewer"),
            ("set_role", "plan-enterprise"),
        ]
        sources = {a["target"]: a["sources"] for a in shown["actions"]}
        assert sources["editor"] == ['group "Editors EMEA"']
        assert sources["viewer"] == ["user roles"]
        assert sources["plan-enterprise"] == ['group "plan-enterprise"']
        # Acme's create_user reads the roles of an account it finds: Billing was there
        # before Usher, so the plan notes that it keeps it rather than revoke it.
        assert shown["notes"] == ["keeps billing: found in the app, not granted by Usher"]
        jobs = await settle(usher_db, connected.id, pia, 1)
        assert await ran(usher_db, jobs) == expected, "the job ran what the plan showed"
        assert roles(acme, pia_mail) == {"Billing", "Editor", "Viewer"}
        assert plan_of(acme, pia_mail) == "Enterprise"
        assert roles(acme, bo_mail) == {"Editor"} and plan_of(acme, bo_mail) == "Enterprise"
        seen = 1 + len(jobs)

        remove = filled("entra", "remove_member_default", member=pia)
        await call("PATCH", f"/Groups/{enterprise}", remove)
        jobs = await settle(usher_db, connected.id, pia, seen)
        assert await ran(usher_db, jobs) == [("set_role", "plan-pro")], "never through Free"
        assert plan_of(acme, pia_mail) == "Pro"
        seen += len(jobs)

        async with usher_db.session() as session:
            bo_seen = len((await session.exec(select(Job).where(Job.identity_id == bo))).all())
        await call("DELETE", f"/Groups/{editors}")
        jobs = await settle(usher_db, connected.id, pia, seen)
        assert await ran(usher_db, jobs) == [("revoke_entitlement", "editor")]
        bo_jobs = await settle(usher_db, connected.id, bo, bo_seen)
        assert await ran(usher_db, bo_jobs) == [("revoke_entitlement", "editor")]
        assert roles(acme, pia_mail) == {"Billing", "Viewer"}, "Billing was never Usher's"
        assert plan_of(acme, pia_mail) == "Pro" and plan_of(acme, bo_mail) == "Enterprise"

        after, shown = await planned(pia)
        assert after == []
        assert shown["notes"] == ["keeps billing: found in the app, not granted by Usher"]

        seen += len(jobs)
        await call("PATCH", f"/Users/{pia}", filled("entra", "disable_default"))
        jobs = await settle(usher_db, connected.id, pia, seen)
        assert await ran(usher_db, jobs) == [], "Usher did not activate Pia's account"
        (user_in_acme,) = acme.state.users_with_email(pia_mail)
        assert user_in_acme.active
        after, shown = await planned(pia)
        assert after == [] and any("not deactivated" in note for note in shown["notes"])
        owned = await api.put(
            f"/api/integrations/{connected.id}/ownership", json={"authoritative": True}
        )
        assert owned.status_code == 200 and owned.json()["authoritative"], owned.text
        after, _ = await planned(pia)
        assert after == [("deactivate_user", None)]
