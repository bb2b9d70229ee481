"""experiments.benches.pool_sweep end to end: two pool sizes, one round, a table and a plot from real runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_a_small_sweep_writes_its_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.benches.pool_sweep", "--sizes", "2,8", "--workloads", "hello",
                          "--conc", "20", "--rounds", "1", "--duration", "1", "--results-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    sweep, = tmp_path.glob("pool-sweep-*")
    table = (sweep / "pool-sweep.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| standard | hello |")]
    assert [row.split(" | ")[2] for row in rows] == ["2", "8"], table
    assert all(int(row.split(" | ")[3].replace(",", "")) > 0 for row in rows)
    # summarized again from the files alone, the same table
    again = subprocess.run([sys.executable, "-m", "experiments.benches.pool_sweep", "--from", str(sweep)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and (sweep / "pool-sweep.md").read_text() == table
