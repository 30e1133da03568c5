"""The fault suite (issue 11): nothing lost, nothing doubled, nobody locked out.

Every test here is marked `faults`: `make test` leaves them out (`-m "not faults"` in
pyproject.toml's addopts) and `make test-faults` runs them (`python -m tests.faults.run`:
one pytest per database, side by side). Each scenario runs once per database and notes what
it expected and what it observed; the run ends with that table.
"""

import json
import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.databases import DATABASES
from tests.faults.support import TABLE_ENV, Outcome, format_table

HERE = __file__.rsplit("/", 1)[0]
ROWS: list[Outcome] = []
ROW_KEY = pytest.StashKey[Outcome]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory `faults` before `-m` selects, whatever its module says."""
    for item in items:
        if str(item.path).startswith(HERE):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(params=DATABASES)
def kind(request: pytest.FixtureRequest) -> str:
    """Run a scenario on SQLite and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def outcome(request: pytest.FixtureRequest, kind: str) -> Iterator[Outcome]:
    """Return the scenario's row of the final table; the test fills expected and observed."""
    doc = (request.function.__doc__ or request.node.name).strip().splitlines()[0]
    row = Outcome(scenario=doc.split(":")[0], database=kind)
    request.node.stash[ROW_KEY] = row
    ROWS.append(row)
    started = time.monotonic()
    yield row
    row.seconds = time.monotonic() - started


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Note each scenario's result (passed, FAILED, skipped with its reason) in its row."""
    report = yield
    row = item.stash.get(ROW_KEY, None)
    if row is None:
        return report
    if report.when == "call" or report.outcome != "passed":
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            row.result = f"SKIPPED ({reason})"
        elif report.failed:
            row.result = "FAILED" if report.when == "call" else f"ERROR in {report.when}"
        elif row.result == "not run":
            row.result = "passed"
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print every scenario's expected and observed counts and its time, per database."""
    if not ROWS:
        return
    rows = [row.row() for row in ROWS]
    table = os.environ.get(TABLE_ENV)
    if table:
        Path(table).write_text(json.dumps(rows))
    terminalreporter.section("fault suite: nothing lost, nothing doubled, nobody locked out")
    for line in format_table(rows):
        terminalreporter.write_line(line)
