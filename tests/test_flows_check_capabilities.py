"""`usher flows check` knows which actions each capability needs and says what a lack means."""

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from tests.harness import ROOT


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    """Return a copy of the shipped Acme flows to strip actions from."""
    target = tmp_path / "flows"
    shutil.copytree(ROOT / "flows" / "acme", target / "acme")
    return target


def declare(flows_dir: Path, actions: list[str], **changes: object) -> None:
    """Rewrite Acme's template to declare only these actions (and other changes)."""
    path = flows_dir / "acme" / "app.yaml"
    template = yaml.safe_load(path.read_text())
    template.update(actions=actions, **changes)
    path.write_text(yaml.safe_dump(template))


def check(flows_dir: Path) -> tuple[int, list[str], str]:
    """Run the check; return its exit code, its stderr lines and its stdout."""
    result = CliRunner().invoke(app, ["flows", "check", "acme", "--flows-dir", str(flows_dir)])
    return result.exit_code, result.stderr.strip().splitlines(), result.stdout


def test_a_template_with_only_login_is_refused_with_what_it_lacks(flows_dir: Path) -> None:
    """Only login: provisioning, deprovisioning and both kinds of entitlements are errors."""
    declare(flows_dir, ["login"])
    code, lines, _ = check(flows_dir)
    assert code == 1
    app_yaml = f"{flows_dir / 'acme' / 'app.yaml'}: actions: "
    assert all(line.startswith(app_yaml) for line in lines), lines
    said = [line.removeprefix(app_yaml) for line in lines]
    assert (
        "provisioning needs create_user; the template lacks create_user: Usher cannot create"
        " accounts: every user the IdP assigns stays without one" in said
    )
    assert (
        "deprovisioning needs deactivate_user; the template lacks deactivate_user: a user the"
        " IdP deactivates or deletes keeps access to the app" in said
    )
    assert any(
        s.startswith(
            "entitlements needs grant_entitlement and revoke_entitlement; the template lacks"
            " grant_entitlement, revoke_entitlement:"
        )
        for s in said
    )
    assert any(s.startswith("exclusive entitlements needs set_role;") for s in said)
    notes = [s for s in said if s.startswith("note: ")]
    assert [n.split(" needs ")[0] for n in notes] == [
        "note: reactivation",
        "note: drift",
        "note: profile updates",
    ]
    assert "note: drift needs list_users; the template lacks list_users:" in notes[1]


def test_half_of_the_entitlement_actions_is_an_error(flows_dir: Path) -> None:
    """Grant without revoke: a value withdrawn in the IdP would stay in the app."""
    actions = yaml.safe_load((flows_dir / "acme" / "app.yaml").read_text())["actions"]
    declare(flows_dir, [a for a in actions if a != "revoke_entitlement"])
    code, lines, _ = check(flows_dir)
    assert code == 1
    assert len(lines) == 1
    assert (
        "entitlements needs grant_entitlement and revoke_entitlement; the template lacks"
        in (lines[0])
    )
    assert lines[0].endswith(
        "lacks revoke_entitlement: the multi entitlements the template"
        " declares can be neither granted nor taken away: a value the IdP"
        " grants or withdraws never reaches the app"
    )


def test_notes_inform_and_pass(flows_dir: Path) -> None:
    """No list_users, no entitlements, no entitlement actions: a note on drift, and OK."""
    declare(
        flows_dir,
        ["login", "create_user", "update_user", "deactivate_user", "reactivate_user"],
        entitlements=[],
    )
    code, lines, out = check(flows_dir)
    assert code == 0, lines
    assert len(lines) == 1 and ": actions: note: drift needs list_users" in lines[0]
    assert "acme: flows OK" in out
