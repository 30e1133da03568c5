"""Groups and mappings for the IT admin, by API and CLI: map, unmap, show, and the plan.

The SCIM server runs without a worker, so the plan shows what the jobs would do.
"""

import asyncio

from typer.testing import CliRunner

from cli.main import app
from engine.apps.template import load_app
from engine.planner import desired_state
from engine.storage.db import Database
from engine.storage.models import AppAccount
from tests.harness import ROOT
from tests.scim.conftest import GROUP_SCHEMA, Scim, ScimServer, identity_row

ACME = load_app(ROOT / "flows", "acme")


def push_groups(scim: Scim) -> tuple[str, str]:
    """Create ann and bob and push four groups, as Okta does; return (ann, bob) ids."""
    ann = scim.user("ann@example.com", entitlements=[{"value": "viewer"}])["id"]
    bob = scim.user("bob@example.com", name={"givenName": "Bob", "familyName": "Brown"})["id"]
    for name, members in (
        ("editor", [ann]),
        ("Acme Editors", [ann, bob]),
        ("Sales", [bob]),
        ("plan-pro", [bob]),
    ):
        body = {"schemas": [GROUP_SCHEMA], "displayName": name}
        body["members"] = [{"value": m} for m in members]
        scim.ok("POST", "/Groups", body)
    return ann, bob


def actions_of(plan: dict, user_name: str) -> list[tuple[str, str | None, list[str]]]:
    """Return one identity's planned actions as (name, target, sources)."""
    (identity,) = [i for i in plan["identities"] if i["user_name"] == user_name]
    return [(a["name"], a["target"], a["sources"]) for a in identity["actions"]]


async def test_the_api_maps_groups_and_shows_the_plan_with_its_sources(
    scim: Scim, scim_server: ScimServer, scim_db: Database
) -> None:
    """Map, list, plan, unmap over HTTP; 400 and 404 say why; no token, no answer."""
    _, bob = push_groups(scim)
    bob_row = await identity_row(scim_db, bob)
    async with scim_db.session() as session:
        session.add(
            AppAccount(
                integration_id=scim.id,
                identity_id=bob,
                exists=True,
                active=True,
                attributes=desired_state(bob_row, ACME).attributes,
                entitlements=["editor", "plan-enterprise"],
            )
        )
        await session.commit()
    base = f"{scim_server.api}/api/integrations/{scim.id}"
    operator = {"Authorization": f"Bearer {scim.operator}"}
    client = scim.client

    def idle() -> list[str]:
        view = client.get(base, headers=operator).json()
        return [g["display_name"] for g in view["groups_granting_nothing"]]

    assert idle() == ["Acme Editors", "Sales"]
    mapping = {"group": "acme editors", "value": "billing"}
    created = client.post(f"{base}/mappings", json=mapping, headers=operator)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["created"], body["group_pushed"], body["queued_jobs"]) == (True, True, 1)
    assert body["mapping"]["group_label"] == "Acme Editors"
    assert body["mapping"]["group_kind"] == "id" and body["mapping"]["value"] == "billing"
    again = client.post(f"{base}/mappings", json=mapping, headers=operator)
    assert again.status_code == 200 and again.json()["created"] is False
    assert idle() == ["Sales"]
    listed = client.get(f"{base}/mappings", headers=operator).json()
    assert [(m["group_label"], m["value"]) for m in listed] == [("Acme Editors", "billing")]

    plan = client.get(f"{base}/plan", headers=operator)
    assert plan.status_code == 200, plan.text
    assert actions_of(plan.json(), "ann@example.com") == [
        ("create_user", None, []),
        ("update_user", None, []),
        ("grant_entitlement", "billing", ['mapping of group "Acme Editors"']),
        ("grant_entitlement", "editor", ['group "editor"']),
        ("grant_entitlement", "viewer", ["user entitlements"]),
    ]
    assert actions_of(plan.json(), "bob@example.com") == [
        ("grant_entitlement", "billing", ['mapping of group "Acme Editors"']),
        ("revoke_entitlement", "editor", []),
        ("set_role", "plan-pro", ['group "plan-pro"']),
    ]
    one = client.get(f"{base}/plan", params={"user": "BOB@example.com"}, headers=operator)
    assert [i["user_name"] for i in one.json()["identities"]] == ["bob@example.com"]

    refusals = [
        (client.post(f"{base}/mappings", json={**mapping, "value": "root"}, headers=operator), 400),
        (client.post(f"{base}/mappings", json={**mapping, "group": " "}, headers=operator), 400),
        (
            client.post(
                f"{scim_server.api}/api/integrations/nope/mappings", json=mapping, headers=operator
            ),
            404,
        ),
        (client.get(f"{base}/plan", params={"user": "nobody"}, headers=operator), 404),
        (client.get(f"{scim_server.api}/api/integrations/nope/plan", headers=operator), 404),
        (
            client.delete(
                f"{base}/mappings", params={"group": "Sales", "value": "x"}, headers=operator
            ),
            404,
        ),
    ]
    details = [r.json()["detail"] for r, _ in refusals]
    assert [r.status_code for r, _ in refusals] == [code for _, code in refusals], details
    assert "no entitlement 'root'" in details[0] and "name a group" in details[1]
    assert "no integration 'nope'" in details[2] and "no user 'nobody'" in details[3]
    assert "no mapping of 'Sales'" in details[5]
    assert not any("Traceback" in r.text for r, _ in refusals)
    for headers in ({}, {"Authorization": f"Bearer {scim.token}"}):
        assert client.post(f"{base}/mappings", json=mapping, headers=headers).status_code == 401
        assert client.get(f"{base}/plan", headers=headers).status_code == 401
        assert client.delete(f"{base}/mappings?group=x", headers=headers).status_code == 401

    removed = client.delete(
        f"{base}/mappings", params={"group": "Acme Editors", "value": "billing"}, headers=operator
    )
    assert removed.status_code == 200, removed.text
    assert [m["value"] for m in removed.json()["removed"]] == ["billing"]
    assert removed.json()["queued_jobs"] == 1
    assert idle() == ["Acme Editors", "Sales"]


async def test_the_cli_maps_a_group_and_prints_the_plan_with_its_sources(
    scim: Scim, cli: CliRunner
) -> None:
    """`usher plan` names what grants each action; `integrations show` the idle groups."""
    push_groups(scim)

    def usher(*args: str) -> asyncio.Future:
        return asyncio.to_thread(cli.invoke, app, list(args))  # type: ignore[return-value]

    shown = await usher("integrations", "show", scim.id)
    assert shown.exit_code == 0, shown.output
    idle = shown.stdout.split("groups that grant nothing")[1]
    assert "Acme Editors (2 members)" in idle and "Sales (1 member)" in idle

    mapped = await usher("integrations", "map-group", scim.id, "Acme Editors", "billing")
    assert mapped.exit_code == 0, mapped.output
    assert "'Acme Editors'" in mapped.stdout and "-> billing" in mapped.stdout
    assert "1 group job(s) queued" in mapped.stdout
    later = await usher("integrations", "map-group", scim.id, "Contractors", "viewer")
    assert later.exit_code == 0 and "no such group pushed yet" in later.stdout

    planned = await usher("plan", "--integration", scim.id, "--user", "ann@example.com")
    assert planned.exit_code == 0, planned.output
    lines = [line.strip() for line in planned.stdout.splitlines()]
    assert "mass-change guard  0 of at most 25 accounts losing access this hour" in lines
    assert lines[lines.index("ann@example.com") :] == [
        "ann@example.com",
        "create_user",
        "update_user",
        'grant_entitlement billing  <- mapping of group "Acme Editors"',
        'grant_entitlement editor   <- group "editor"',
        "grant_entitlement viewer   <- user entitlements",
    ]

    shown = await usher("integrations", "show", scim.id)
    assert "Acme Editors (id " in shown.stdout and "-> billing" in shown.stdout
    assert "Contractors -> viewer" in shown.stdout
    assert "Acme Editors (2 members)" not in shown.stdout

    unmapped = await usher("integrations", "unmap-group", scim.id, "Acme Editors")
    assert unmapped.exit_code == 0, unmapped.output
    assert "unmapped 'Acme Editors' -> billing" in unmapped.stdout
    for args, message in (
        (("integrations", "unmap-group", scim.id, "Acme Editors"), "no mapping of"),
        (("integrations", "map-group", scim.id, "Sales", "root"), "no entitlement 'root'"),
        (("plan", "--integration", scim.id, "--user", "nobody"), "no user 'nobody'"),
        (("plan", "--integration", "nope"), "no integration 'nope'"),
    ):
        refused = await usher(*args)
        assert refused.exit_code == 2 and message in refused.stderr, refused.output
        assert len(refused.stderr.strip().splitlines()) == 1


def test_plan_help_names_the_options() -> None:
    """`usher plan --help` documents --integration and --user."""
    result = CliRunner().invoke(app, ["plan", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--integration" in result.stdout and "--user" in result.stdout
