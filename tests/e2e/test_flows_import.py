"""`usher flows import` and `record`: checked-in recordings become flows that replay on Acme."""

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from engine.storage.db import Database
from fixtures.acme.server import AcmeServer
from fixtures.globex.server import GlobexServer
from tests.harness import ROOT, Connected, Usher, connect_acme, connect_globex

RECORDINGS = ROOT / "fixtures" / "recordings"
RECORDED_LOGIN = ("recorder-admin", "Recorded-Passw0rd")
"""The service account the author typed while recording, stored as the integration's secrets."""


@pytest.fixture
def own_flows(usher: Usher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI at the running Usher, with a copy of Acme as the deployment's own app."""
    for name in ("acme", "globex"):
        shutil.copytree(ROOT / "flows" / name, tmp_path / name)
    (tmp_path / "flow.schema.json").write_bytes((ROOT / "flows" / "flow.schema.json").read_bytes())
    monkeypatch.setenv("USHER_DATA_DIR", str(usher.settings.data_dir))
    monkeypatch.setenv("USHER_REDIS_URL", usher.redis_url)
    monkeypatch.setenv("USHER_DATABASE_URL", usher.database_url)
    monkeypatch.setenv("USHER_FLOWS_DIR", str(tmp_path))
    monkeypatch.setenv("USHER_ISOLATED_DNS", "true")
    monkeypatch.setenv("USHER_STEP_TIMEOUT_MS", "4000")
    return tmp_path / "acme"


@pytest.fixture
async def recorded_as(usher: Usher, usher_db: Database, acme: AcmeServer) -> Connected:
    """Connect an Acme whose service account is the one typed in the recordings."""
    acme.state.username, acme.state.password = RECORDED_LOGIN
    return await connect_acme(usher, usher_db, acme)


@pytest.fixture
async def recorded_globex(usher: Usher, usher_db: Database, globex: GlobexServer) -> Connected:
    """Connect a Globex whose service account is the one typed in its recording."""
    globex.state.username, globex.state.password = RECORDED_LOGIN
    return await connect_globex(usher, usher_db, globex)


def invoke(*args: str) -> str:
    """Run the CLI and return its output, failing with it on a non-zero exit."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_recordings_import_and_replay_against_acme(
    own_flows: Path, acme: AcmeServer, recorded_as: Connected
) -> None:
    """Each checked-in recording imports with the integration's secrets and then replays."""
    connected = recorded_as
    imported = invoke(
        "flows", "import", str(RECORDINGS / "acme_create_user.py"),
        "--app", "acme", "--action", "create_user", "--integration", connected.id,
        "--sample", "email=jane.recorded@example.com",
        "--sample", "first_name=Jane", "--sample", "last_name=Recorded", "--force",
    )  # fmt: skip
    assert "flows check passes" in imported and "dropped the first 9" in imported
    flow = (own_flows / "create_user.yaml").read_text()
    assert "{{ secrets." not in flow and RECORDED_LOGIN[1] not in flow
    invoke(
        "flows", "replay", "acme", "create_user", "--integration", connected.id,
        "--var", "email=kim.imported@example.com",
        "--var", "first_name=Kim", "--var", "last_name=Imported",
    )  # fmt: skip
    [kim] = acme.state.users_with_email("kim.imported@example.com")
    assert (kim.first_name, kim.last_name) == ("Kim", "Imported")

    invoke(
        "flows", "import", str(RECORDINGS / "acme_update_user.py"),
        "--app", "acme", "--action", "update_user", "--integration", connected.id,
        "--sample", "account.key=u000007", "--sample", "last_name=Renamed",
        "--sample", "costCenter=CC-42", "--force",
    )  # fmt: skip
    invoke(
        "flows", "replay", "acme", "update_user", "--integration", connected.id,
        "--var", f"account.key={kim.id}", "--var", "last_name=Moved",
        "--var", "costCenter=CC-7",
    )  # fmt: skip
    assert acme.state.get(kim.id).last_name == "Moved"


def test_a_globex_recording_imports_and_replays(
    own_flows: Path, globex: GlobexServer, recorded_globex: Connected
) -> None:
    """A single-page app's recording: the member's #route becomes account.key, and the
    imported update replays through the kept sessionStorage sign-in and the cookie wall."""
    connected = recorded_globex
    imported = invoke(
        "flows", "import", str(RECORDINGS / "globex_update_user.py"),
        "--app", "globex", "--action", "update_user", "--integration", connected.id,
        "--sample", "account.key=#/members/g-7f3a9c21b0", "--sample", "title=Field Engineer",
        "--force",
    )  # fmt: skip
    assert "dropped the first 10" in imported
    flow = (own_flows.parent / "globex" / "update_user.yaml").read_text()
    assert "goto: '{{ integration.base_url }}/{{ account.key }}'" in flow
    member = globex.state.add_member("rae.recorded@example.com", "Rae", "Recorded")
    invoke(
        "flows", "replay", "globex", "update_user", "--integration", connected.id,
        "--var", f"account.key=#/members/{member.id}", "--var", "title=Site Lead",
    )  # fmt: skip
    assert globex.state.get(member.id).title == "Site Lead"


def test_an_import_holding_a_secret_writes_nothing(
    own_flows: Path, recorded_as: Connected, tmp_path: Path
) -> None:
    """A recording that shows the service account's password in a URL is refused whole."""
    connected = recorded_as
    leaky = tmp_path / "leaky.py"
    leaky.write_text(
        (RECORDINGS / "acme_update_user.py")
        .read_text()
        .replace('/users/u000007")', f'/users/u000007?pw={RECORDED_LOGIN[1]}")', 1)
    )
    out = tmp_path / "update_user.yaml"
    result = CliRunner().invoke(
        app,
        ["flows", "import", str(leaky), "--app", "acme", "--action", "update_user",
         "--integration", connected.id, "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "secret 'admin_password'" in result.output
    assert not out.exists()


def test_record_without_a_screen_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no display, `flows record` explains and prints the codegen and import commands."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "USHER_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(
        app,
        ["flows", "record", "acme", "create_user", "--url", "http://127.0.0.1:8123/login",
         "--sample", "email=jane@example.com"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no display here" in result.output
    assert "playwright codegen --target python-async -o recording.py" in result.output
    assert "usher flows import recording.py --app acme --action create_user" in result.output
    assert "--sample email=jane@example.com" in result.output
