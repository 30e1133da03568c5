"""Run the fault suite as `make test-faults` does: one pytest per database, side by side.

The scenarios spend much of their time waiting (a Redis outage, a lapsing lease, back-offs,
slow pages, an integration's two slots), so the SQLite and the PostgreSQL run overlap well on
two cores (support.BUDGET). Each run's output is kept in a log and printed when it ends, then
one table of every scenario on both databases; the exit status fails if either run failed.

    python -m tests.faults.run [pytest options...]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.databases import DATABASES
from tests.faults.support import TABLE_ENV, format_table
from tests.harness import ROOT


def main(extra: list[str]) -> int:
    """Start a pytest per database, wait for both, print their output and one table."""
    workdir = Path(tempfile.mkdtemp(prefix="usher-faults-"))
    started = time.monotonic()
    runs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for kind in DATABASES:
            command = [sys.executable, "-m", "pytest", "-q", "-m", "faults", "-k", kind]
            command += [*extra, "tests/faults"]
            env = {**os.environ, TABLE_ENV: str(workdir / f"{kind}.json")}
            with (workdir / f"{kind}.log").open("wb") as log:
                runs[kind] = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
        codes = {kind: run.wait() for kind, run in runs.items()}
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.terminate()
                run.wait()
    rows: list[dict[str, str]] = []
    for kind in DATABASES:
        print(f"\n===== fault suite on {kind}: exit status {codes[kind]} =====", flush=True)
        sys.stdout.write((workdir / f"{kind}.log").read_text(errors="replace"))
        table = workdir / f"{kind}.json"
        if table.exists():
            rows += json.loads(table.read_text())
    print("\n===== fault suite: nothing lost, nothing doubled, nobody locked out =====")
    for line in format_table(rows):
        print(line)
    print(f"both databases in {time.monotonic() - started:.0f}s; logs in {workdir}")
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
