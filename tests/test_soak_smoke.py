"""The soak end to end, shortened: a real server, real visitors, real attackers, and its three files.

About 15 s of soak (``--minutes 0.25``) on one runtime with three quick
attacks, one per kind (a slow head, an HTTP/2 reset storm, garbage), run as
the command line runs it; then soak.json must hold samples, latency
intervals, attack outcomes and verdicts, and soak.png must be a PNG.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_soak_writes_json_plot_and_readme(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "experiments.hostile.soak", "--minutes", "0.25", "--runtimes", "hybrid",
         "--protocols", "h1,h2", "--attacks", "slowloris,h2-rapid-reset,garbage", "--attack-seconds", "6",
         "--interval", "2", "--live", "-o", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=55)
    assert done.returncode == 0, done.stdout + done.stderr
    (out,) = tmp_path.glob("soak-*")
    doc = json.loads((out / "soak.json").read_text())
    run = doc["runtimes"]["hybrid"]
    assert "error" not in run, run["error"]
    assert len(run["samples"]) >= 10 and {"rss_mib", "threads", "fds"} <= set(run["samples"][-1])
    assert set(run["latency"]) == {"h1", "h2"} and all(run["latency"].values())
    assert {h["attack"] for h in run["hostile"]} <= {"slowloris", "h2-rapid-reset", "garbage"} and run["hostile"]
    assert set(run["series"]) >= {"rss_mib", "threads", "fds"}
    assert all("flat" in s for s in run["series"].values())
    assert (out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Verdict rule" in (out / "README.md").read_text()
