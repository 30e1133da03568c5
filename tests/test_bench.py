"""`usher bench` runs end to end and reports each measure against its baseline."""

import math

from cli.bench import report, run_bench
from tests.harness import ROOT


async def test_bench_reports_ratios() -> None:
    """A small run yields the three measures with finite, positive ratios (no timing limits)."""
    results = await run_bench(users=500, rounds=5, flows_dir=ROOT / "flows")
    assert [r.baseline_name for r in results] == [
        "GET /healthz",
        "among 100 users",
        "raw Playwright",
    ]
    assert all(r.value_ms > 0 and r.baseline_ms > 0 and math.isfinite(r.ratio) for r in results)
    table = report(results)
    assert "userName eq among 500 users" in table and table.count("x\n") == 2
