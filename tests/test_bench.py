"""`usher bench --quick --json` runs end to end and gives every row its baseline.

Whether a target is met is the bench's business, on a quiet machine: timings are never
asserted here, only that each row was measured against a baseline from the same run.
"""

import json
import math
import subprocess
import sys

from tests.harness import ROOT

ROWS = [
    "scim_post_c8",
    "scim_get_c8",
    "scim_post_p99_ms",
    "job_create",
    "throughput",
    "pss_c2_mib",
    "evidence_kb_per_step",
]
"""Every row but the PostgreSQL ones, which run only when the bench is given a server."""
KEYS = {"name", "value", "baseline", "ratio", "target", "unit", "p50", "p95"}
BENCH_TIMEOUT_S = 600
"""A quick run takes under a minute on a quiet machine; a loaded one takes longer."""


def positive(number: object) -> bool:
    """Tell whether a JSON value is a finite number above zero."""
    return isinstance(number, int | float) and math.isfinite(number) and number > 0


def test_the_quick_bench_measures_every_row_against_its_baseline() -> None:
    """One quick run: the rows of the issue's table, each with a value, a baseline, a ratio,
    a target and percentiles, and the samples it took stated."""
    finished = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    report = json.loads(finished.stdout)

    assert report["samples"]["quick"] is True
    assert report["load_before"] and report["load_after"]
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ROWS
    for name, row in rows.items():
        assert set(row) == KEYS, name
        assert positive(row["value"]) and positive(row["baseline"]), row
        assert positive(row["ratio"]) and row["target"] and row["unit"], row
        assert positive(row["p50"]) and positive(row["p95"]), row
