"""The onboarding commands: an integration starts importing, says so, and can skip it."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.harness import ROOT


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run the CLI with a fresh data dir and no Redis in the environment."""
    monkeypatch.delenv("USHER_REDIS_URL", raising=False)
    monkeypatch.delenv("USHER_DATABASE_URL", raising=False)
    monkeypatch.setenv("USHER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("USHER_FLOWS_DIR", str(ROOT / "flows"))
    return CliRunner()


def create(cli: CliRunner, *options: str) -> str:
    """Create an Acme integration; return its id."""
    made = cli.invoke(
        app,
        ["integrations", "create", "--app", "acme", "--base-url", "http://127.0.0.1:9", *options],
    )
    assert made.exit_code == 0, made.output
    return made.stdout.split()[1]


def onboarding(cli: CliRunner, integration_id: str) -> str:
    """Return the onboarding state `integrations list --json` gives an integration."""
    listed = cli.invoke(app, ["integrations", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = [r for r in json.loads(listed.stdout) if r["id"] == integration_id]
    return row["onboarding"]


def test_a_new_integration_imports_first_unless_told_the_app_is_empty(cli: CliRunner) -> None:
    """create says what importing means; --skip-import plans at once; the list shows both."""
    made = cli.invoke(
        app, ["integrations", "create", "--app", "acme", "--base-url", "http://127.0.0.1:9"]
    )
    assert made.exit_code == 0, made.output
    importing = made.stdout.split()[1]
    assert (
        "onboarding   importing: plans nothing until the accounts already in the app are"
        " imported (its jobs wait)" in made.stdout
    )
    empty = create(cli, "--skip-import")
    assert (onboarding(cli, importing), onboarding(cli, empty)) == ("importing", "ready")
    table = cli.invoke(app, ["integrations", "list"]).stdout
    assert f"{importing}  acme        under_validation  importing" in table


def test_an_operator_may_skip_an_import_once(cli: CliRunner) -> None:
    """skip-import makes it plan (no job waited yet); a second time it is not importing."""
    integration_id = create(cli)
    skipped = cli.invoke(app, ["integrations", "skip-import", integration_id])
    assert skipped.exit_code == 0, skipped.output
    assert skipped.stdout.strip() == (
        f"integration {integration_id} plans without an import; 0 waiting job(s) queued"
    )
    assert onboarding(cli, integration_id) == "ready"
    again = cli.invoke(app, ["integrations", "skip-import", integration_id])
    assert again.exit_code == 2
    assert again.stderr.strip() == f"usher: integration {integration_id} is not importing"
    unknown = cli.invoke(app, ["integrations", "skip-import", "nope"])
    assert unknown.exit_code == 2 and "no integration 'nope'" in unknown.stderr


def test_drift_before_any_inventory_says_how_to_run_one(cli: CliRunner) -> None:
    """No report yet: `usher drift` names the command that makes one; --json says null."""
    integration_id = create(cli)
    shown = cli.invoke(app, ["drift", "--integration", integration_id])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        f"integration  {integration_id} (importing)",
        "no inventory yet: `usher reconcile --integration ID` runs one (the import is still due)",
    ]
    as_json = json.loads(
        cli.invoke(app, ["drift", "--integration", integration_id, "--json"]).stdout
    )
    assert as_json["report"] is None and as_json["onboarding"] == "importing"
