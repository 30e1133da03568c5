"""The `usher` command line: clear one-line errors with exit 2, secrets only on stdin."""

import json
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.harness import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run the CLI with a fresh data dir and no Redis in the environment."""
    monkeypatch.delenv("USHER_REDIS_URL", raising=False)
    monkeypatch.setenv("USHER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("USHER_FLOWS_DIR", str(ROOT / "flows"))
    return CliRunner()


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_need_a_redis(cli: CliRunner, command: str) -> None:
    """Without a Redis URL: one line naming USHER_REDIS_URL, exit 2."""
    result = cli.invoke(app, [command])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "USHER_REDIS_URL" in lines[0] and "usher up" in lines[0]


def test_unknown_app_is_one_line(cli: CliRunner) -> None:
    """An unknown app names the apps there are."""
    result = cli.invoke(app, ["integrations", "create", "--app", "nope", "--base-url", "http://x"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"usher: unknown app 'nope' (apps in {ROOT / 'flows'}: acme, globex)"
    )


def test_bad_base_url_is_refused(cli: CliRunner) -> None:
    """A base URL that is not http(s) is refused before anything is stored."""
    result = cli.invoke(app, ["integrations", "create", "--app", "acme", "--base-url", "ftp://x"])
    assert result.exit_code == 2
    assert "base URL must be http(s)" in result.stderr


def test_create_integration_and_secrets(cli: CliRunner, tmp_path: Path) -> None:
    """--json prints id, URL and token once; only hashes and ciphertexts reach the disk."""
    result = cli.invoke(
        app, ["integrations", "create", "--app", "acme", "--base-url", "http://127.0.0.1:9/"]
    )
    assert result.exit_code == 0, result.output
    created = cli.invoke(
        app,
        ["integrations", "create", "--app", "acme", "--base-url", "http://127.0.0.1:9", "--json"],
    )
    assert created.exit_code == 0, created.output
    info = json.loads(created.stdout)
    assert set(info) == {"id", "scim_base_url", "token"}
    assert info["scim_base_url"].endswith(f"/scim/v2/{info['id']}")
    assert info["token"].startswith("usc_")

    password = "correct horse battery staple 42"
    stored = cli.invoke(
        app, ["integrations", "set-secret", info["id"], "admin_password"], input=password + "\n"
    )
    assert stored.exit_code == 0, stored.output
    unknown = cli.invoke(app, ["integrations", "set-secret", info["id"], "pin"], input="1234")
    assert unknown.exit_code == 2
    assert "declares no secret 'pin'" in unknown.stderr and "admin_password" in unknown.stderr
    empty = cli.invoke(app, ["integrations", "set-secret", info["id"], "totp_seed"], input="")
    assert empty.exit_code == 2 and "standard input" in empty.stderr
    missing = cli.invoke(app, ["integrations", "set-secret", "nope", "totp_seed"], input="x")
    assert missing.exit_code == 2 and "no integration 'nope'" in missing.stderr
    typo = "JBSWY3DPEHPK3PX1"
    wrong = cli.invoke(app, ["integrations", "set-secret", info["id"], "totp_seed"], input=typo)
    assert wrong.exit_code == 2 and "not base32" in wrong.stderr and typo not in wrong.stderr
    uri = "otpauth://totp/Acme:bot?secret=JBSWY3DPEHPK3PXP&period=60&digits=8&issuer=Acme"
    qr = cli.invoke(app, ["integrations", "set-secret", info["id"], "totp_seed"], input=uri)
    assert qr.exit_code == 0, qr.output

    operator = cli.invoke(app, ["tokens", "create", "--name", "ops"])
    assert operator.exit_code == 0 and operator.stdout.startswith("uop_")

    data_dir = tmp_path / "var"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "vault.key").stat().st_mode) == 0o600
    disk = b"".join(p.read_bytes() for p in data_dir.glob("usher.db*"))
    for secret in (password, info["token"], operator.stdout.strip()):
        assert secret.encode() not in disk


def test_fixtures_serve_runs_globex_and_names_the_fixtures(cli: CliRunner, tmp_path: Path) -> None:
    """`usher fixtures serve globex` serves the single-page app and prints its sign-in; an
    unknown fixture is one line naming both."""
    unknown = cli.invoke(app, ["fixtures", "serve", "initech"])
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == "usher: unknown fixture 'initech' (fixtures: acme, globex)"
    port = free_port()
    log = tmp_path / "globex.log"
    command = [sys.executable, "-m", "cli", "fixtures", "serve", "globex", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:

        def serving() -> bool:
            try:
                return 'data-release="1"' in httpx.get(f"http://127.0.0.1:{port}/").text
            except httpx.TransportError:
                return False

        wait_for(serving, 30, "usher fixtures serve globex")
    finally:
        process.terminate()
        process.wait(timeout=10)
    printed = log.read_text()
    assert f"Globex on http://127.0.0.1:{port}" in printed and "TOTP seed:" in printed
