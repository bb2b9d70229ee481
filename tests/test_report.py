"""experiments.harness.report: reading, summarizing and rendering results (no servers, no load)."""

from __future__ import annotations

import copy
import csv
import json

import pytest

pytest.importorskip("matplotlib")

from experiments.harness import plots, report  # noqa: E402


def run(runtime, conc, round_no, rps, *, p99_us=25_000, wrk_errors=None, fairness="default", error=None):
    doc = {"runtime": runtime, "workload": "hello", "proto": "h1", "conc": conc, "round": round_no,
           "servers": 1, "load_processes": 1, "error": error}
    if error:
        return doc  # a failed run carries little more than its key and the error
    doc["load"] = {
        "tool": "wrk", "requests": int(rps * 5), "requests_per_s": rps,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0} | (wrk_errors or {}),
        "latency_us": {"p50": 15_000, "p90": 18_000, "p99": p99_us, "p99.9": 40_000, "max": 60_000,
                       "mean": 16_000},
    }
    doc["fairness"] = None if fairness is None else {
        "tool": "h2load", "client_rps": {"min": 0.0, "max": 6.2, "mean": 3.0, "sd": 0.1},
        "request_time_us": {"min": 1, "max": 2, "mean": 1.5, "sd": 0.1}, "requests": 1234,
        "failed": 4, "errored": 3, "timeout": 1,
    }
    doc["other_cpus"] = 0.5 if (runtime, conc) == ("hybrid", 10) else 0.0
    doc["cost"] = {"cpu_s": 4.9, "cpu_us_per_request": 1e6 / rps, "peak_rss_kib": 61_440,
                   "rss_per_connection_bytes": 3_072.0, "peak_threads": 32, "ctx_voluntary": 1234,
                   "ctx_involuntary": 56, "connections_established": conc}
    return doc


@pytest.fixture
def doc() -> dict:
    """2 runtimes x 2 concurrencies x 2 rounds; one errored run, one without fairness, one all-failed point."""
    return {
        "metadata": {"date": "2026-11-21T06:40:00+00:00", "python": "3.11.7", "cpus": 2, "kernel": "Linux 6.1",
                     "tools": {"wrk": "wrk debian/4.1.0", "h2load": "h2load nghttp2/1.52.0"},
                     "server_cpus": [0], "client_cpus": [1], "duration_s": 5, "warmup_s": 1, "repeat": 2,
                     "command": "python -m experiments run --conc 10,1000", "notes": ["synthetic"]},
        "runs": [
            run("threaded", 10, 1, 6000.0),
            run("threaded", 10, 2, 5000.0, fairness=None),
            run("threaded", 1000, 1, 4000.0, wrk_errors={"timeout": 7, "read": 2}),
            run("threaded", 1000, 2, None, error="server did not start"),
            run("hybrid", 10, 1, 7000.0),
            run("hybrid", 10, 2, 8000.0),
            run("hybrid", 1000, 1, None, error="wrk crashed"),
            run("hybrid", 1000, 2, None, error="wrk crashed again"),
        ],
    }


def by_key(rows):
    return {(r["runtime"], r["conc"]): r for r in rows}


def test_summarize_medians_spread_and_order(doc):
    rows = report.summarize(doc)
    assert [(r["conc"], r["runtime"]) for r in rows] == [
        (10, "hybrid"), (10, "threaded"), (1000, "hybrid"), (1000, "threaded")]
    row = by_key(rows)[("threaded", 10)]
    # Two rounds: the lower middle round is picked, and every field comes from it.
    assert row["rps"] == 5000.0 and row["round"] == 2
    assert row["rps_all"] == [6000.0, 5000.0]
    assert row["spread"] == pytest.approx(1000 / 5500)
    assert row["cpu_us_per_request"] == pytest.approx(200.0)
    assert (row["p50_ms"], row["p99_ms"], row["p999_ms"], row["max_ms"]) == (15.0, 25.0, 40.0, 60.0)
    assert row["peak_rss_mib"] == 60.0 and row["rss_per_conn_kib"] == 3.0
    assert (row["ctx_vol"], row["ctx_invol"], row["peak_threads"], row["conns_established"]) == (1234, 56, 32, 10)
    # That round had no fairness run: the fairness fields are None, not a crash.
    assert row["fair_min_rps"] is row["fair_max_rps"] is row["fair_mean_rps"] is None
    assert row["errors"] == 0 and row["rounds"] == 2 and not row["failed"]


def test_summarize_odd_rounds_takes_the_true_median(doc):
    doc["runs"].append(run("hybrid", 10, 3, 9000.0))
    row = by_key(report.summarize(doc))[("hybrid", 10)]
    assert row["rps"] == 8000.0 and row["round"] == 2 and row["rounds"] == 3
    assert row["spread"] == pytest.approx(2000 / 8000)


def test_errors_sum_wrk_and_fairness(doc):
    row = by_key(report.summarize(doc))[("threaded", 1000)]
    # wrk: 7 timeouts + 2 read errors; h2load: failed 4 (errored 3 and timeout 1 are part of it).
    assert row["errors"] == 7 + 2 + 4
    assert row["fair_min_rps"] == 0.0 and row["fair_max_rps"] == 6.2 and row["fair_mean_rps"] == 3.0


def test_partly_and_wholly_failed_points(doc):
    rows = by_key(report.summarize(doc))
    partly = rows[("threaded", 1000)]
    assert not partly["failed"] and partly["error"] is None
    assert partly["rounds"] == 2 and partly["rounds_ok"] == 1 and partly["rps"] == 4000.0
    assert partly["spread"] is None  # one good round: no spread to speak of
    assert partly["round_errors"] == ["round 2: server did not start"]
    failed = rows[("hybrid", 1000)]
    assert failed["failed"] and "wrk crashed" in failed["error"] and "wrk crashed again" in failed["error"]
    assert failed["rps"] is None and failed["rps_all"] == [] and failed["spread"] is None


def test_missing_sections_do_not_crash(doc, capsys):
    sparse = copy.deepcopy(doc)
    for r in sparse["runs"]:
        r.pop("cost", None)
        if "load" in r:
            del r["load"]["latency_us"]["p99.9"]
            del r["load"]["errors"]
    sparse["runs"].append({"runtime": "trio", "workload": "cpu", "proto": "h1", "conc": 5, "error": "boom"})
    sparse["metadata"] = {}
    rows = report.summarize(sparse)
    row = by_key(rows)[("threaded", 10)]
    assert row["p999_ms"] is None and row["cpu_us_per_request"] is None and row["peak_rss_mib"] is None
    report.print_table(rows)
    out = capsys.readouterr().out
    assert "hello (h1)" in out and "cpu (h1)" in out and "FAILED" in out
    assert report.summarize({}) == []


def test_render_writes_markdown_csv_and_plots(doc, tmp_path, capsys):
    source = tmp_path / "experiment-test.json"
    source.write_text(json.dumps(doc))
    written = report.render(source)
    md, table = tmp_path / "experiment-test.md", tmp_path / "experiment-test.csv"
    png = tmp_path / "experiment-test-hello-h1.png"
    assert written == [md, table, png]
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    assert "hello (h1)" in capsys.readouterr().out

    text = md.read_text()
    for expected in ("wrk debian/4.1.0", "h2load nghttp2/1.52.0", "CPUs [0]", "CPUs [1]",
                     "python -m experiments run --conc 10,1000", "## hello (h1)",
                     "![hello (h1)](experiment-test-hello-h1.png)", "## How to read this", "starved",
                     "FAILED", "wrk crashed", "busy on the machine just before: hybrid @ 10"):
        assert expected in text, expected

    with open(table, newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 4
    first = lines[0]
    assert (first["runtime"], first["conc"], first["rps"], first["rps_all"]) == ("hybrid", "10", "7000.0", "7000;8000")


def test_cli_renders_a_file(doc, tmp_path, capsys):
    source = tmp_path / "old.json"
    source.write_text(json.dumps(doc))
    assert report.main([str(source)]) == 0
    assert (tmp_path / "old.md").exists() and (tmp_path / "old-hello-h1.png").exists()
    assert not (tmp_path / "old-hello-h1.svg").exists() and not (tmp_path / "pyperf").exists()
    assert report.main([]) == 2


def write_run_dir(doc, path, *, tail=""):
    """A run directory as the harness writes it: env.json, one runs.jsonl line per run, then ``tail``."""
    path.mkdir()
    (path / "env.json").write_text(json.dumps(doc["metadata"] | {
        "cpu_model": "Test CPU @ 1.00GHz", "git_commit": "abc1234", "limits": {"nofile": 20000},
        "packages": {"h11": "0.14.0", "uvicorn": None}, "plan": {"levels": [10, 1000], "repeat": 2}}))
    (path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in doc["runs"]) + tail)
    return path


def test_load_run_reads_a_directory_and_skips_a_truncated_last_line(doc, tmp_path):
    run_dir = write_run_dir(doc, tmp_path / "experiment-20261121-070000",
                            tail=json.dumps(run("hybrid", 10, 3, 1.0))[:57])  # cut mid-write
    loaded = report.load_run(run_dir)
    assert loaded["runs"] == doc["runs"]
    assert loaded["metadata"]["cpu_model"] == "Test CPU @ 1.00GHz"
    assert any("last line" in note and "incomplete" in note for note in loaded["metadata"]["notes"])
    assert report.summarize(loaded) == report.summarize(doc)
    # The single-document form gives the same document.
    source = tmp_path / "old.json"
    source.write_text(json.dumps(doc))
    assert report.load_run(source) == doc


def test_load_run_tolerates_a_run_just_started(doc, tmp_path):
    run_dir = tmp_path / "starting"
    run_dir.mkdir()
    (run_dir / "env.json").write_text(json.dumps(doc["metadata"]))
    assert report.load_run(run_dir)["runs"] == []
    (run_dir / "runs.jsonl").write_text('{"runtime": "thr')  # the first line, half written
    assert report.load_run(run_dir)["runs"] == []
    with pytest.raises(FileNotFoundError):
        report.load_run(tmp_path / "starting" / "..")  # tmp_path: no env.json, no runs.jsonl


def test_render_a_run_directory(doc, tmp_path, capsys):
    doc["runs"] += [run("peer:waitress", 10, 1, 3000.0), run("peer:waitress", 1000, 1, 2500.0)]
    run_dir = write_run_dir(doc, tmp_path / "experiment-20261121-070000", tail='{"runtime": "hyb')
    written = report.render(run_dir)
    names = [p.relative_to(run_dir).as_posix() for p in written]
    assert names == ["REPORT.md", "report.csv", "hello-h1.png", "hello-h1.svg", "pyperf/hybrid.json",
                     "pyperf/peer_waitress.json", "pyperf/threaded.json"]
    png, svg = run_dir / "hello-h1.png", run_dir / "hello-h1.svg"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    assert b"<svg" in svg.read_bytes()[:1000]
    assert "hello (h1)" in capsys.readouterr().out

    text = (run_dir / "REPORT.md").read_text()
    for expected in ("# Results: experiment-20261121-070000", "Test CPU @ 1.00GHz", "**Git commit:** `abc1234`",
                     "nofile=20000", "**Packages:** h11 0.14.0; not installed: uvicorn", "![hello (h1)](hello-h1.png)", "([SVG](hello-h1.svg))",
                     "peer:waitress", "runs.jsonl: last line", "## Comparing runs",
                     "python -m pyperf compare_to", "pyperf/threaded.json", "## How to read this"):
        assert expected in text, expected

    with open(run_dir / "report.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 6 and {line["runtime"] for line in lines} == {"hybrid", "threaded", "peer:waitress"}


def test_peers_are_dashed_and_styles_fixed(doc):
    doc["runs"] += [run("peer:waitress", 10, 1, 3000.0), run("peer:aaa", 10, 1, 3000.0)]
    style = plots.runtime_styles(report.summarize(doc))
    # astra runtimes first, then peers; every peer dashed, every runtime its own colour and marker.
    assert list(style) == ["hybrid", "threaded", "peer:aaa", "peer:waitress"]
    assert [line for _, _, line in style.values()] == ["-", "-", "--", "--"]
    assert len({c for c, _, _ in style.values()}) == len({m for _, m, _ in style.values()}) == 4


def test_plot_panels_and_peer_lines(doc, tmp_path):
    assert [key for key, _, _ in plots.PANELS] == ["rps", "p50_ms", "p99_ms", "peak_rss_mib", "peak_threads",
                                                    "cpu_us_per_request"]
    without = plots.plot(doc, report.summarize(doc), tmp_path, "astra", formats=("svg",))
    assert [p.name for p in without] == ["astra-hello-h1.svg"]
    assert "stroke-dasharray" not in without[0].read_text()  # astra's runtimes: solid lines

    doc["runs"] += [run("peer:waitress", 10, 1, 3000.0), run("peer:waitress", 1000, 1, 2500.0)]
    paths = plots.plot(doc, report.summarize(doc), tmp_path, None, formats=("svg",))
    assert [p.name for p in paths] == ["hello-h1.svg"]
    text = paths[0].read_text()
    for _, label, _ in plots.PANELS:  # matplotlib writes each text as a comment before its glyphs
        assert f"<!-- {label} -->" in text, label
    assert "stroke-dasharray" in text  # the peer's dashed line
    assert "not plotted, run failed: hybrid@1000" in text
