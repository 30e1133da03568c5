"""Every Acme action from a SCIM change through the real worker, and again when already so."""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from engine.storage.db import Database
from fixtures.acme.server import AcmeServer
from fixtures.idp import okta_user
from tests.e2e.support import job_detail, scim_patch, scim_post, wait_job
from tests.harness import ROOT, Connected, Usher

ACME_EXTENSION = "urn:usher:params:scim:schemas:extension:acme:2.0:User"


async def reconciled(
    usher: Usher, db: Database, connected: Connected, user_id: str, action: str
) -> list[dict]:
    """Wait for the identity's job, check it ran `action` successfully, return its steps."""
    job = await wait_job(db, user_id)
    assert job.status == "succeeded", job.error
    detail = await job_detail(usher, connected, job.id)
    names = [a["name"] for a in detail["actions"]]
    assert names[-1] == action, names
    assert names[0] == "login", names
    done = detail["actions"][-1]
    assert done["status"] == "succeeded"
    return done["steps"]


def skipped(steps: list[dict]) -> list[str]:
    """Return the names of the "already so" steps; none of them is reported as skipped."""
    assert all(s["status"] != "skipped" for s in steps)
    return [s["name"] for s in steps if s["status"] == "already"]


async def test_every_action_and_its_already_so_path(
    usher: Usher, usher_db: Database, acme: AcmeServer, connected: Connected
) -> None:
    """Create, update, grant, revoke, deactivate, reactivate; then each when already done."""
    state = acme.state
    body = okta_user("hana.hall@example.com", "Hana", "Hall")
    body["entitlements"] = [{"value": "viewer"}]
    body["schemas"] = [*body["schemas"], ACME_EXTENSION]
    body[ACME_EXTENSION] = {"costCenter": "CC-42"}
    response = await scim_post(connected, body)
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    job = await wait_job(usher_db, user_id)
    assert job.status == "succeeded", job.error
    names = [a["name"] for a in (await job_detail(usher, connected, job.id))["actions"]]
    assert names == ["login", "create_user", "update_user", "grant_entitlement"]
    (hana,) = state.users_with_email("hana.hall@example.com")
    assert hana.roles == {"Viewer"}
    assert hana.cost_center == "CC-42", "the app's extension attribute reached Acme"

    cost = {"op": "replace", "path": f"{ACME_EXTENSION}:costCenter", "value": "CC-7"}
    await scim_patch(connected, user_id, cost)
    steps = await reconciled(usher, usher_db, connected, user_id, "update_user")
    assert skipped(steps) == [] and state.get(hana.id).cost_center == "CC-7"

    await scim_patch(
        connected, user_id, {"op": "replace", "path": "name.familyName", "value": "Hill"}
    )
    steps = await reconciled(usher, usher_db, connected, user_id, "update_user")
    assert skipped(steps) == [] and state.get(hana.id).last_name == "Hill"

    state.get(hana.id).last_name = "Holt"
    await scim_patch(
        connected, user_id, {"op": "replace", "path": "name.familyName", "value": "Holt"}
    )
    steps = await reconciled(usher, usher_db, connected, user_id, "update_user")
    assert skipped(steps) == ["Profile already up to date"]

    editor = {"op": "add", "path": "entitlements", "value": [{"value": "editor"}]}
    await scim_patch(connected, user_id, editor)
    steps = await reconciled(usher, usher_db, connected, user_id, "grant_entitlement")
    assert skipped(steps) == [] and state.get(hana.id).roles == {"Viewer", "Editor"}

    state.get(hana.id).roles.add("Admin")
    admin = {"op": "add", "path": "entitlements", "value": [{"value": "admin"}]}
    await scim_patch(connected, user_id, admin)
    steps = await reconciled(usher, usher_db, connected, user_id, "grant_entitlement")
    assert skipped(steps) == ["Role already held"]

    no_editor = {"op": "remove", "path": 'entitlements[value eq "editor"]'}
    await scim_patch(connected, user_id, no_editor)
    steps = await reconciled(usher, usher_db, connected, user_id, "revoke_entitlement")
    assert skipped(steps) == [] and state.get(hana.id).roles == {"Viewer", "Admin"}

    state.get(hana.id).roles.discard("Admin")
    no_admin = {"op": "remove", "path": 'entitlements[value eq "admin"]'}
    await scim_patch(connected, user_id, no_admin)
    steps = await reconciled(usher, usher_db, connected, user_id, "revoke_entitlement")
    assert skipped(steps) == ["Role already not held"]

    await scim_patch(connected, user_id, {"op": "replace", "path": "active", "value": False})
    steps = await reconciled(usher, usher_db, connected, user_id, "deactivate_user")
    assert skipped(steps) == [] and state.get(hana.id).active is False

    await scim_patch(connected, user_id, {"op": "replace", "path": "active", "value": True})
    steps = await reconciled(usher, usher_db, connected, user_id, "reactivate_user")
    assert skipped(steps) == [] and state.get(hana.id).active is True

    state.get(hana.id).active = False
    await scim_patch(connected, user_id, {"op": "replace", "path": "active", "value": False})
    steps = await reconciled(usher, usher_db, connected, user_id, "deactivate_user")
    assert skipped(steps) == ["Account already deactivated"]

    state.get(hana.id).active = True
    await scim_patch(connected, user_id, {"op": "replace", "path": "active", "value": True})
    steps = await reconciled(usher, usher_db, connected, user_id, "reactivate_user")
    assert skipped(steps) == ["Account already active"]

    assert len(state.users_with_email("hana.hall@example.com")) == 1
    assert state.logins == 1, "every job after the first reused the kept session"

    state.expire_sessions_at = f"/users/{hana.id}"
    await scim_patch(
        connected, user_id, {"op": "replace", "path": "name.givenName", "value": "Hanna"}
    )
    job = await wait_job(usher_db, user_id)
    assert job.status == "succeeded", job.error
    actions = [
        (a["name"], a["status"]) for a in (await job_detail(usher, connected, job.id))["actions"]
    ]
    assert actions == [
        ("login", "succeeded"),
        ("update_user", "failed"),
        ("login", "succeeded"),
        ("update_user", "succeeded"),
    ], "the session ended mid-job: signed in again once, then the update went through"
    assert state.get(hana.id).first_name == "Hanna" and state.logins == 2


@pytest.fixture
def replay_env(usher: Usher, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Point the CLI at the running Usher's data dir and Redis."""
    monkeypatch.setenv("USHER_DATA_DIR", str(usher.settings.data_dir))
    monkeypatch.setenv("USHER_REDIS_URL", usher.redis_url)
    monkeypatch.setenv("USHER_DATABASE_URL", usher.database_url)
    monkeypatch.setenv("USHER_FLOWS_DIR", str(ROOT / "flows"))
    monkeypatch.setenv("USHER_ISOLATED_DNS", "true")
    monkeypatch.setenv("USHER_STEP_TIMEOUT_MS", "4000")
    return CliRunner()


def replay(cli: CliRunner, connected: Connected, action: str, *pairs: str) -> str:
    """Run `usher flows replay` and return its output, failing with it on error."""
    args = ["flows", "replay", "acme", action, "--integration", connected.id]
    for pair in pairs:
        args += ["--var", pair]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_set_role_and_list_users_through_replay(
    replay_env: CliRunner, acme: AcmeServer, connected: Connected
) -> None:
    """set_role moves a plan (then is already so); list_users reads every page."""
    state = acme.state
    for n in range(22):
        state.add_user(f"bulk{n:02d}@example.com", "Bulk", f"User{n:02d}")
    ivy = state.add_user("ivy.ink@example.com", "Ivy", "Ink")

    output = replay(
        replay_env, connected, "set_role", f"account.key={ivy.id}", "entitlement=plan-pro"
    )
    assert state.get(ivy.id).plan == "Pro"
    assert "Choose the plan" in output and "[label='Plan']" in output
    assert ".png" in output
    again = replay(
        replay_env, connected, "set_role", f"account.key={ivy.id}", "entitlement=plan-pro"
    )
    assert "Plan already set" in again and "set_role already so" in again

    listing = replay(replay_env, connected, "list_users")
    rows = [json.loads(line) for line in listing.splitlines() if line.startswith("  {")]
    assert len(rows) == len(state.users) == 26
    assert {r["key"] for r in rows} == set(state.users)
    assert next(r for r in rows if r["key"] == ivy.id)["email"] == "ivy.ink@example.com"
    assert "users: 26 row(s)" in listing


def test_replay_refuses_unknown_input(
    replay_env: CliRunner, connected: Connected, usher: Usher
) -> None:
    """An unknown action, an unknown entitlement, missing secrets: one line and exit 2."""
    created = replay_env.invoke(
        app,
        ["integrations", "create", "--app", "acme", "--base-url", "http://127.0.0.1:9", "--json"],
    )
    bare = json.loads(created.stdout)["id"]
    lacking = replay_env.invoke(app, ["flows", "replay", "acme", "login", "--integration", bare])
    assert lacking.exit_code == 2
    assert lacking.stderr.strip() == (
        f"usher: integration {bare} lacks secrets admin_username, admin_password, totp_seed:"
        " set them with `usher integrations set-secret`"
    )
    unknown = replay_env.invoke(
        app, ["flows", "replay", "acme", "launch", "--integration", connected.id]
    )
    assert unknown.exit_code == 2 and "has no action 'launch'" in unknown.stderr
    bad = replay_env.invoke(
        app,
        [
            "flows",
            "replay",
            "acme",
            "set_role",
            "--integration",
            connected.id,
            "--var",
            "entitlement=plan-gold",
        ],
    )
    assert bad.exit_code == 2 and "no entitlement 'plan-gold'" in bad.stderr
