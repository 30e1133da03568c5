"""The import contract: cli over api over engine, fixtures on their own (`lint-imports`)."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT

PACKAGES = ("cli", "api", "engine", "fixtures")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = "cli over api over engine"
FIXTURES_ALONE = "fixtures import neither cli, api nor engine"
ONLY_CLI_USES_FIXTURES = "api and engine never import fixtures"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with the project's configuration in cwd, importing only from cwd."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Copy the four packages and pyproject.toml into a directory of their own."""
    root = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    yield root


def test_the_real_tree_keeps_the_contract() -> None:
    """Every contract is kept by the code as it is."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in (LAYERS, FIXTURES_ALONE, ONLY_CLI_USES_FIXTURES):
        assert f"{name} KEPT" in result.stdout


def test_the_copy_keeps_the_contract(tree_copy: Path) -> None:
    """The copy is faithful: unchanged, it passes too (so a failure below is the crossing)."""
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("importer", "imported", "contract"),
    [
        ("engine", "api.app", LAYERS),
        ("engine", "cli.main", LAYERS),
        ("api", "cli.commands", LAYERS),
        ("engine", "fixtures.acme.state", ONLY_CLI_USES_FIXTURES),
        ("api", "fixtures.idp", ONLY_CLI_USES_FIXTURES),
        ("fixtures", "engine.settings", FIXTURES_ALONE),
        ("fixtures", "api.app", FIXTURES_ALONE),
    ],
)
def test_a_crossed_layer_breaks_the_contract(
    tree_copy: Path, importer: str, imported: str, contract: str
) -> None:
    """A module that imports across a layer fails lint-imports, naming the broken contract."""
    crossing = tree_copy / importer / "crossing.py"
    crossing.write_text(f'"""Crosses a layer on purpose."""\n\nimport {imported}  # noqa: F401\n')
    try:
        result = lint_imports(tree_copy)
    finally:
        crossing.unlink()
    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout
    assert f"{importer}.crossing -> {imported}" in result.stdout
