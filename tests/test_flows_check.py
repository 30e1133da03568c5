"""`usher flows check`: broken flows are refused with file, step and field named."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from engine.automation.language import flow_json_schema
from tests.harness import ROOT


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    """Return a copy of the shipped flows to break."""
    target = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", target)
    return target


def check(flows_dir: Path) -> tuple[int, list[str]]:
    """Run the check and return its exit code and error lines."""
    result = CliRunner().invoke(app, ["flows", "check", "acme", "--flows-dir", str(flows_dir)])
    return result.exit_code, result.stderr.strip().splitlines()


def edit(path: Path, old: str, new: str) -> None:
    """Replace text in a flow file, failing if it is not there."""
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_the_shipped_flows_pass(flows_dir: Path) -> None:
    """Every action each shipped app (Acme, Globex) declares is present and valid."""
    result = CliRunner().invoke(app, ["flows", "check", "--flows-dir", str(flows_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "acme, globex: flows OK\n"


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "create_user",
            'value: "{{ user.first_name }}"',
            'value: "{{ user.frist_name }}"',
            "create_user.yaml: steps[7] (Type the first name): unknown variable user.frist_name",
        ),
        (
            "update_user",
            'text: "{{ user.email }}"',
            'text: "{{ entitlement.value }}"',
            "update_user.yaml: steps[8] (The account shows the email): unknown variable"
            " 'entitlement'",
        ),
        (
            "create_user",
            'goto: "{{ integration.base_url }}/users"',
            'goto: "{{ integration.base_url }}/users?p={{ secrets.admin_password }}"',
            "create_user.yaml: steps[0] (Open the users page): a secret may only be the value"
            " of a fill step",
        ),
        (
            "list_users",
            'goto: "{{ integration.base_url }}/people"',
            'goto: "https://evil.example/people"',
            "must start with {{ integration.base_url }} or an allowed host of the app",
        ),
        (
            "login",
            "secret: totp_seed",
            "secret: pin_code",
            "totp reads secret 'pin_code', which the app does not declare",
        ),
        (
            "create_user",
            "    click: {role: link, name: Invite user}",
            "    click: {role: link, name: Invite user, css: a.invite}",
            "create_user.yaml: file: steps.5.click: Value error, give exactly one of role,"
            " label, placeholder, text, test_id, css (got ['role', 'css'])",
        ),
        (
            "grant_entitlement",
            "  - name: Tick the role\n    check:",
            "  - name: Tick the role\n    click: {text: x}\n    check:",
            "grant_entitlement.yaml: file: steps.2: Value error, a step needs exactly one of",
        ),
        (
            "set_role",
            "    select: {label: Plan, exact: true}\n    value:",
            "    select: {label: Plan, exact: true}\n    valeu:",
            "set_role.yaml: file: steps.2.valeu: Extra inputs are not permitted",
        ),
        (
            "deactivate_user",
            "version: 1",
            "version: 1\nsteps: [",
            "deactivate_user.yaml: file: not YAML",
        ),
    ],
)
def test_broken_flows_are_refused(
    flows_dir: Path, file: str, old: str, new: str, expected: str
) -> None:
    """Each breakage is one line naming the file, the step and what is wrong."""
    edit(flows_dir / "acme" / f"{file}.yaml", old, new)
    code, lines = check(flows_dir)
    assert code == 1
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert lines[0].startswith(str(flows_dir / "acme" / f"{file}.yaml"))


def test_a_declared_action_without_a_flow_is_refused(flows_dir: Path) -> None:
    """The template declares reactivate_user; its file is gone."""
    (flows_dir / "acme" / "reactivate_user.yaml").unlink()
    code, lines = check(flows_dir)
    assert code == 1
    assert lines == [
        f"{flows_dir / 'acme' / 'reactivate_user.yaml'}: file:"
        " action 'reactivate_user' is declared but missing"
    ]


def test_an_extracted_variable_is_known_only_after_its_step(flows_dir: Path) -> None:
    """vars.users read before the step that extracts it is an unknown variable."""
    edit(
        flows_dir / "acme" / "list_users.yaml",
        'goto: "{{ integration.base_url }}/people"',
        'goto: "{{ integration.base_url }}/people?n={{ vars.users }}"',
    )
    code, lines = check(flows_dir)
    assert code == 1 and "unknown variable vars.users" in lines[0]


def test_the_published_schema_is_current() -> None:
    """flows/flow.schema.json is what the code validates against."""
    published = json.loads((ROOT / "flows" / "flow.schema.json").read_text())
    assert published == flow_json_schema(), "run: usher flows schema > flows/flow.schema.json"
