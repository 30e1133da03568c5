"""Usher installs like a product: a wheel into a clean virtual environment, run from elsewhere.

The install test is SLOW ON PURPOSE and marked `slow` (never skipped): 60-100 s on 2 busy
cores. It builds the wheel from a copy of the source tree and installs it, with every
dependency, into a new virtual environment, as an operator would; pip resolving and
installing the dependencies (from its cache) is most of that time, `usher up` with
Chromium about 10 s. It is the only test that proves the wheel carries the built-in flows,
migrations, templates and samples, and runs without the checkout.
"""

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from engine.apps.template import AppError, available_apps, load_app
from tests.harness import ROOT, free_port, stop_process, wait_for

LEFT_OUT = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", "tests", ".*cache"
)
"""What an operator's copy of the source would not have: the wheel must not need it."""
EXTENSION = "urn:usher:params:scim:schemas:extension:{app}:2.0:User"
BASE = ("--base-url", "http://127.0.0.1:9", "--data-dir", "data")


def installed(tmp_path: Path) -> Path:
    """Copy the source tree, install it into a new virtual environment; return its bin dir."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=LEFT_OUT)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    install += ["install", "--quiet", "--disable-pip-version-check", str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(source)  # what runs from here on is only what the wheel carried
    return venv / "bin"


def own_app(flows_dir: Path) -> None:
    """Write a deployment's own app, `beta`, as a copy of the built-in Acme under a new name."""
    shutil.copytree(ROOT / "flows" / "acme", flows_dir / "beta")
    template = flows_dir / "beta" / "app.yaml"
    text = template.read_text().replace("name: acme", "name: beta")
    text = text.replace("extension:acme:", "extension:beta:").replace("AcmeUser", "BetaUser")
    template.write_text(text)


def test_own_apps_sit_beside_the_built_in_ones(tmp_path: Path) -> None:
    """A deployment's folder adds its apps to the built-in ones and wins on a shared name."""
    own_app(tmp_path)
    shutil.copytree(ROOT / "flows" / "acme", tmp_path / "acme")
    assert available_apps(tmp_path) == ["acme", "beta", "globex"]
    assert available_apps(None) == ["acme", "globex"]
    assert load_app(tmp_path, "beta").folder == tmp_path / "beta"
    assert load_app(tmp_path, "acme").folder == tmp_path / "acme"
    assert load_app(None, "acme").folder == (ROOT / "flows" / "acme").resolve()
    with pytest.raises(AppError, match=f"apps in {tmp_path}, .*flows: acme, beta, globex"):
        load_app(tmp_path, "gamma")


@pytest.mark.slow
def test_a_clean_install_runs_usher_up_from_another_directory(tmp_path: Path) -> None:
    """`pip install .` into a clean venv; `usher up --data-dir` from elsewhere serves /livez,
    /readyz (its worker launched Chromium and beats) and SCIM discovery, for a built-in app
    and for one of the deployment's own apps given with --flows-dir / USHER_FLOWS_DIR."""
    bin_dir = installed(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    own_app(tmp_path / "own-flows")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("USHER_") and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env |= {"USHER_ISOLATED_DNS": "true", "USHER_FLOWS_DIR": str(tmp_path / "own-flows")}

    def usher(*args: str) -> str:
        """Run the installed `usher` from elsewhere and return what it printed."""
        done = subprocess.run(
            [bin_dir / "usher", *args], cwd=elsewhere, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert usher("--version").strip() == f"usher {version('usher')}"
    engine_file = subprocess.run(
        [bin_dir / "python", "-c", "import engine; print(engine.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(engine_file.strip()).is_relative_to(tmp_path / "venv"), engine_file
    acme = json.loads(usher("integrations", "create", "--app", "acme", "--json", *BASE))
    beta = json.loads(usher("integrations", "create", "--app", "beta", "--json", *BASE))

    port = free_port()
    log = tmp_path / "up.log"
    command = [bin_dir / "usher", "up", "--data-dir", "data", "--port", str(port)]
    command += ["--flows-dir", str(tmp_path / "own-flows")]
    up = subprocess.Popen(
        command, cwd=elsewhere, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    api = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{api}/readyz", up, log), 90, "usher up to be ready")
        assert httpx.get(f"{api}/livez", timeout=10).json()["version"] == version("usher")
        for integration, app, extension in ((acme, "acme", "AcmeUser"), (beta, "beta", "BetaUser")):
            scim = f"{api}/scim/v2/{integration['id']}"
            config = httpx.get(f"{scim}/ServiceProviderConfig", timeout=10)
            assert config.status_code == 200 and config.json()["patch"] == {"supported": True}
            urn = EXTENSION.format(app=app)
            schema = httpx.get(f"{scim}/Schemas/{urn}", headers=bearer(integration), timeout=10)
            assert schema.status_code == 200, schema.text
            assert schema.json()["name"] == extension
    finally:
        stop_process(up)
    assert up.returncode == 0, log.read_text()
    assert (elsewhere / "data" / "usher.db").is_file()


def bearer(integration: dict[str, str]) -> dict[str, str]:
    """Return the Authorization header of an integration's SCIM token."""
    return {"Authorization": f"Bearer {integration['token']}"}


def answers(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    """Tell whether a URL answers 200, failing with the log if the process died."""
    if process.poll() is not None:
        raise AssertionError(f"usher up exited:\n{log.read_text()}")
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
