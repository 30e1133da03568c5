"""`usher flows check` holds app.yaml's inventory to what list_users really reads."""

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from tests.harness import ROOT


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    """Return a copy of the shipped Acme flows to change."""
    target = tmp_path / "flows"
    shutil.copytree(ROOT / "flows" / "acme", target / "acme")
    return target


def inventory(flows_dir: Path, **changes: object) -> None:
    """Rewrite Acme's inventory section with some of its fields changed."""
    path = flows_dir / "acme" / "app.yaml"
    template = yaml.safe_load(path.read_text())
    template["inventory"].update(changes)
    path.write_text(yaml.safe_dump(template))


def check(flows_dir: Path) -> tuple[int, list[str]]:
    """Run the check; return its exit code and its stderr lines."""
    result = CliRunner().invoke(app, ["flows", "check", "acme", "--flows-dir", str(flows_dir)])
    return result.exit_code, result.stderr.strip().splitlines()


def test_the_shipped_inventory_reads_what_list_users_reads(flows_dir: Path) -> None:
    """Acme as shipped: the rows and every column the inventory names are read."""
    assert check(flows_dir) == (0, [])


def test_a_column_list_users_does_not_read_is_named(flows_dir: Path) -> None:
    """A matching column and an entitlement column that no extract_rows reads: two errors."""
    inventory(flows_dir, match={"attribute": "email", "column": "mail"}, entitlements=["groups"])
    code, lines = check(flows_dir)
    where = f"{flows_dir / 'acme' / 'app.yaml'}: inventory: "
    assert code == 1
    assert lines == [
        f"{where}match.column 'mail' is no column list_users reads",
        f"{where}entitlements 'groups' is no column list_users reads",
    ]


def test_rows_list_users_never_reads_are_named(flows_dir: Path) -> None:
    """An inventory of rows no extract_rows fills cannot be read at all."""
    inventory(flows_dir, rows="people")
    code, lines = check(flows_dir)
    assert code == 1
    assert lines == [
        f"{flows_dir / 'acme' / 'app.yaml'}: inventory: list_users reads no rows into 'people':"
        " no extract_rows has into: people"
    ]
