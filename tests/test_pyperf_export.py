"""experiments.harness.pyperf_export: a run's req/s as pyperf suites that pyperf's own CLI reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

pyperf = pytest.importorskip("pyperf")

from experiments.harness import pyperf_export, report  # noqa: E402


def run(runtime, conc, round_no, rps, *, workload="hello", error=None):
    doc = {"runtime": runtime, "workload": workload, "proto": "h1", "conc": conc, "round": round_no,
           "servers": 1, "load_processes": 1, "handler": "experiments.apps:hello", "error": error}
    if rps is not None:
        doc["load"] = {"tool": "wrk", "duration_s": 5.0, "requests": int(rps * 5), "requests_per_s": rps,
                       "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
                       "latency_us": {"p50": 900, "p90": 1500, "p99": 4000, "p99.9": 9000, "max": 12000,
                                      "mean": 1000}}
        doc["cost"] = {"cpu_us_per_request": 150.0, "peak_rss_kib": 20_480, "peak_threads": 3}
        doc["other_cpus"] = 0.0
    return doc


def make_doc(scale: float) -> dict:
    return {
        "metadata": {"date": "2026-11-21T07:00:00+00:00", "python": "3.11.7", "cpus": 2,
                     "cpu_model": "Test CPU\n@ 1.00GHz", "kernel": "Linux 6.1", "git_commit": "abc1234",
                     "tools": {"wrk": "wrk debian/4.1.0", "h2load": None}, "server_cpus": [0],
                     "client_cpus": [1], "command": ""},
        "runs": [
            run("hybrid", 10, 1, 8000.0 * scale), run("hybrid", 10, 2, 8100.0 * scale),
            run("hybrid", 10, 3, 7900.0 * scale),
            run("hybrid", 100, 1, 6000.0 * scale), run("hybrid", 100, 2, None, error="wrk crashed"),
            run("hybrid", 100, 3, 6100.0 * scale),
            run("hybrid", 1000, 1, None, error="server did not start"),  # no good round: left out
            run("hybrid", 10, 1, 900.0 * scale, workload="sleep"),
            run("peer:waitress", 10, 1, 3000.0), run("peer:waitress", 10, 2, 0.0),  # 0 req/s: not a value
            run("trio", 10, 1, None, error="boom"),  # a runtime with nothing good: no file
        ],
    }


def export(doc, out_dir):
    return pyperf_export.export(doc, report.summarize(doc), out_dir, run_id="experiment-test")


def test_one_suite_per_runtime_one_benchmark_per_point(tmp_path):
    written = export(make_doc(1.0), tmp_path / "pyperf")
    assert [p.name for p in written] == ["hybrid.json", "peer_waitress.json"]
    suite = pyperf.BenchmarkSuite.load(str(written[0]))
    assert suite.get_benchmark_names() == ["hello-h1-c10", "hello-h1-c100", "sleep-h1-c10"]
    bench = suite.get_benchmark("hello-h1-c100")
    # One pyperf run per successful round, each holding 1 / req/s.
    assert bench.get_nrun() == 2
    assert bench.get_values() == pytest.approx([1 / 6000.0, 1 / 6100.0])
    assert bench.get_unit() == "second"
    meta = bench.get_metadata()
    assert meta["name"] == "hello-h1-c100" and meta["runtime"] == "hybrid" and meta["conc"] == 100
    assert meta["cpu_model_name"] == "Test CPU @ 1.00GHz"  # newlines are not allowed in pyperf metadata
    assert meta["run_id"] == "experiment-test" and meta["git_commit"] == "abc1234"
    assert meta["date"] == "2026-11-21T07:00:00+00:00" and meta["load_generator"] == "wrk debian/4.1.0"
    assert "command" not in meta and "hostname" not in meta  # empty values dropped; nothing of this machine
    first = bench.get_runs()[0].get_metadata()
    assert first["round"] == 1 and first["loops"] == 30_000 and first["requests_per_s"] == 6000.0
    peer = pyperf.BenchmarkSuite.load(str(written[1]))
    assert peer.get_benchmark_names() == ["hello-h1-c10"]
    assert peer.get_benchmark("hello-h1-c10").get_values() == pytest.approx([1 / 3000.0])


def test_pyperf_cli_compares_two_runs_and_shows_one(tmp_path):
    a = export(make_doc(1.0), tmp_path / "a")[0]
    b = export(make_doc(1.25), tmp_path / "b")[0]  # 25% more req/s in every point
    compared = subprocess.run([sys.executable, "-m", "pyperf", "compare_to", str(a), str(b)],
                              capture_output=True, text=True, timeout=60)
    assert compared.returncode == 0, compared.stderr
    out = compared.stdout
    assert "hello-h1-c10" in out and "hello-h1-c100" in out and "sleep-h1-c10" in out
    assert "1.25x faster" in out
    table = subprocess.run([sys.executable, "-m", "pyperf", "compare_to", "--table", str(a), str(b)],
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "Geometric mean" in table.stdout and "1.25x faster" in table.stdout
    shown = subprocess.run([sys.executable, "-m", "pyperf", "show", "--metadata", str(a)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "hello-h1-c10\n" in shown.stdout and "Mean +- std dev: 125 us +- 2 us" in shown.stdout
    assert "cpu_model_name: Test CPU @ 1.00GHz" in shown.stdout
    # loops = requests: pyperf's raw value is the whole 5 s window, not a suspiciously short timing.
    assert "shortest raw value" not in shown.stdout


def test_nothing_to_export(tmp_path):
    doc = {"metadata": {}, "runs": [run("hybrid", 10, 1, None, error="boom")]}
    assert export(doc, tmp_path / "pyperf") == []
    assert not (tmp_path / "pyperf").exists()
    assert export({}, tmp_path / "pyperf") == []
