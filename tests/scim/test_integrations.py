"""The IT admin's view of an integration, by API and CLI, and the rotation of its SCIM token."""

import asyncio
import json
import time

from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from engine.apps.integrations import set_secret
from engine.apps.template import load_app
from engine.constants import SCIM_AUTH_CACHE_S
from engine.storage.db import Database
from engine.storage.models import AuditEvent, Integration
from engine.storage.vault import Vault
from tests.harness import ROOT
from tests.scim.conftest import Scim, ScimServer

POLL_S = 0.2
ANSWER_SLACK_S = 2.0
"""Beyond the cache's bound: the time one answer may take on a loaded machine."""


def catalogue() -> list[tuple[str, str, str]]:
    """Return Acme's entitlements as (value, label, kind), from its template."""
    return [(e.value, e.label, e.kind) for e in load_app(ROOT / "flows", "acme").entitlements]


async def test_the_api_describes_an_integration_to_an_operator(
    scim: Scim, scim_server: ScimServer, scim_db: Database
) -> None:
    """SCIM URL, app, health, missing secrets and string values; no token shows anything."""
    url = f"{scim_server.api}/api/integrations/{scim.id}"
    async with scim_db.session() as session:
        vault = Vault.from_path(scim_server.settings.vault_key_path)
        await set_secret(session, scim_server.settings, vault, scim.id, "admin_username", "svc")

    response = scim.client.get(url, headers={"Authorization": f"Bearer {scim.operator}"})

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["id"] == scim.id and view["app"] == "acme"
    assert view["scim_base_url"].endswith(f"/scim/v2/{scim.id}")
    assert view["health"] == "under_validation"
    assert view["missing_secrets"] == ["admin_password", "totp_seed"]
    assert [(e["value"], e["label"], e["kind"]) for e in view["entitlements"]] == catalogue()
    endpoints = {e["kind"]: e["scim_endpoint"] for e in view["entitlements"]}
    assert endpoints == {"multi": "/Entitlements", "exclusive": "/Roles"}
    assert scim.token not in response.text and "svc" not in response.text

    for headers in ({}, {"Authorization": f"Bearer {scim.token}"}):
        refused = scim.client.get(url, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    unknown = scim.client.get(
        f"{scim_server.api}/api/integrations/nope",
        headers={"Authorization": f"Bearer {scim.operator}"},
    )
    assert unknown.status_code == 404


def test_the_cli_shows_the_url_and_the_values_to_copy(scim: Scim, cli: CliRunner) -> None:
    """`usher integrations show`: one screen with the SCIM URL and every string value."""
    shown = cli.invoke(app, ["integrations", "show", scim.id])
    as_json = cli.invoke(app, ["integrations", "show", scim.id, "--json"])

    assert shown.exit_code == 0, shown.output
    assert f"/scim/v2/{scim.id}" in shown.output
    assert "admin_username, admin_password, totp_seed" in shown.output
    lines = shown.output.splitlines()
    for value, label, kind in catalogue():
        rows = [line for line in lines if line.split()[:1] == [value]]
        assert len(rows) == 1 and label in rows[0] and kind in rows[0], value
    assert scim.token not in shown.output
    assert as_json.exit_code == 0
    assert [e["value"] for e in json.loads(as_json.output)["entitlements"]] == [
        value for value, _, _ in catalogue()
    ]
    unknown = cli.invoke(app, ["integrations", "show", "nope"])
    assert unknown.exit_code == 2 and unknown.stderr.strip() == "usher: no integration 'nope'"


def refused_after(scim: Scim, deadline_s: float) -> float | None:
    """Poll with the current token until the server refuses it; return how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        answer = scim.call("GET", "/Users")
        if answer.status_code == 401 and answer.json()["status"] == "401":
            return time.monotonic() - started
        time.sleep(POLL_S)
    return None


async def test_rotating_the_token_retires_the_old_one_within_the_cache_bound(
    scim: Scim, cli: CliRunner, scim_db: Database
) -> None:
    """`usher integrations rotate-token` in another process: the server, which had just
    served the old token, refuses it within SCIM_AUTH_CACHE_S; the new one works.

    The command runs in a thread: it runs its own event loop, as from a shell.
    """
    scim.user("before@example.com")

    rotated = await asyncio.to_thread(cli.invoke, app, ["integrations", "rotate-token", scim.id])

    assert rotated.exit_code == 0, rotated.output
    new_token = rotated.output.strip()
    assert new_token.startswith("usc_") and new_token != scim.token
    took = refused_after(scim, SCIM_AUTH_CACHE_S + ANSWER_SLACK_S)
    assert took is not None, f"the old token still worked {SCIM_AUTH_CACHE_S} s after rotation"
    scim.token = new_token
    assert scim.ok("GET", "/Users")["totalResults"] == 1
    async with scim_db.session() as session:
        integration = await session.get(Integration, scim.id)
        events = await session.exec(
            select(AuditEvent.event).where(AuditEvent.integration_id == scim.id)
        )
        assert "integration.token_rotated" in events.all()
    assert integration is not None and new_token not in integration.scim_token_hash
