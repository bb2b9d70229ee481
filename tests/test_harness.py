"""The experiment harness: its plan, and one real end-to-end run on loopback."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.harness.plan import SHARD_CONNECTIONS, Plan, ladder, shards_for
from experiments.harness.postgres import bindir

ROOT = Path(__file__).resolve().parent.parent


def test_ladder_from_a_top_level():
    assert ladder("25000") == [1, 10, 100, 1000, 10000, 25000]
    assert ladder("1000") == [1, 10, 100, 1000]
    assert ladder("1") == [1]


def test_ladder_from_a_list():
    assert ladder("1,64,1000") == [1, 64, 1000]
    with pytest.raises(ValueError):
        ladder("0,10")


def test_large_levels_are_sharded():
    assert shards_for(1000) == 1
    assert shards_for(SHARD_CONNECTIONS) == 1
    assert shards_for(25_000) == 3


def test_default_sweep_fits_in_thirty_minutes():
    plan = Plan(runtimes=["threaded", "hybrid", "asyncio", "trio"],
                workloads=["hello", "cpu", "sleep", "file"], levels=ladder("1000"))
    assert plan.estimate_seconds() < 30 * 60


def test_dry_run_prints_the_plan():
    out = subprocess.run([sys.executable, "-m", "experiments", "run", "--dry-run", "--conc", "25000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "1, 10, 100, 1,000, 10,000, 25,000" in out.stdout and "estimated" in out.stdout


@pytest.mark.skipif(not all(shutil.which(t) for t in ("wrk", "h2load", "taskset")), reason="load tools missing")
def test_a_small_experiment_end_to_end(tmp_path):
    """The CI smoke: two levels, one second each, two runtimes; files and plausible numbers."""
    out = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "--conc", "2,100", "--runtimes", "threaded,asyncio",
         "--workloads", "hello", "--duration", "1", "--warmup", "1", "--fairness", "1", "--pause", "0",
         "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run_dir, = tmp_path.glob("experiment-*")
    env = json.loads((run_dir / "env.json").read_text())
    assert env["tools"]["wrk"] and env["tools"]["h2load"] and env["limits"]["open_files_hard"] > 0
    runs = [json.loads(line) for line in (run_dir / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["runtime"], r["conc"]) for r in runs) == [
        ("asyncio", 2), ("asyncio", 100), ("threaded", 2), ("threaded", 100)]
    for run in runs:
        assert run["error"] is None, run
        assert run["load"]["requests"] > 0 and sum(run["load"]["errors"].values()) == 0
        assert run["cost"]["cpu_us_per_request"] > 0 and run["cost"]["peak_threads"] >= 1
        if run["conc"] == 100:
            assert run["fairness"]["requests"] > 0
            assert run["cost"]["connections_established"] >= 100
    for name in ("REPORT.md", "report.csv", "hello-h1.png", "hello-h1.svg"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "pyperf").glob("*.json"))


def test_an_open_loop_experiment_draws_latency_against_offered_load(tmp_path):
    """--rates: openload offers each rate; a rate far past capacity is not sustained and the ladder stops."""
    out = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "--conc", "10,", "--rates", "200,200000,300000,400000",
         "--runtimes", "hybrid", "--workloads", "hello", "--duration", "1", "--warmup", "1", "--pause", "0",
         "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run_dir, = tmp_path.glob("experiment-*")
    runs = {r["rate"]: r for r in map(json.loads, (run_dir / "runs.jsonl").read_text().splitlines())}
    assert sorted(runs) == [200, 200000, 300000, 400000]
    light = runs[200]
    assert light["sustained"] and light["load"]["tool"] == "openload" and light["fairness"] is None
    assert 150 <= light["load"]["ok_rps"] <= 250 and light["cost"]["cpu_us_per_request"] > 0
    assert runs[200000]["sustained"] is False and runs[300000]["sustained"] is False
    assert runs[400000].get("past_knee") and "load" not in runs[400000]  # two misses in a row: not attempted
    for name in ("REPORT.md", "report.csv", "curves-hello-h1.png"):
        assert (run_dir / name).exists(), name
    assert "highest rate sustained" in (run_dir / "REPORT.md").read_text()


@pytest.mark.skipif(not all(shutil.which(t) for t in ("h2load", "taskset")), reason="load tools missing")
def test_an_http2_experiment_end_to_end(tmp_path):
    """PROTO=h2: h2load with concurrent streams drives the runs and reports per-client rates."""
    out = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "--proto", "h2", "--streams", "4", "--conc", "8",
         "--runtimes", "hybrid,trio", "--workloads", "hello", "--duration", "1", "--warmup", "0",
         "--pause", "0", "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run_dir, = tmp_path.glob("experiment-*")
    assert json.loads((run_dir / "env.json").read_text())["streams"] == 4
    runs = [json.loads(line) for line in (run_dir / "runs.jsonl").read_text().splitlines()]
    assert {r["conc"] for r in runs} == {1, 8}
    for run in runs:
        assert run["error"] is None, run
        load = run["load"]
        assert load["tool"] == "h2load" and not load["h1"] and load["streams"] == 4
        assert load["requests"] > 0 and load["failed"] == 0 and load["latency_us"]["p99"] > 0
        assert run["fairness"]["client_rps"]["min"] > 0
    assert (run_dir / "hello-h2.png").exists()


@pytest.mark.skipif(not all(shutil.which(t) for t in ("wrk", "h2load", "taskset")), reason="load tools missing")
def test_resume_skips_what_was_measured(tmp_path):
    args = [sys.executable, "-m", "experiments", "run", "--conc", "2", "--runtimes", "hybrid",
            "--workloads", "hello", "--duration", "1", "--warmup", "0", "--fairness", "0", "--pause", "0",
            "--results-dir", str(tmp_path)]
    assert subprocess.run(args, cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    run_dir, = tmp_path.glob("experiment-*")
    with open(run_dir / "runs.jsonl", "a") as f:
        f.write('{"truncated": ')  # as if interrupted mid-line
    again = subprocess.run(args + ["--workloads", "hello,cpu", "--resume", str(run_dir)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    runs = [json.loads(line) for line in (run_dir / "runs.jsonl").read_text().splitlines()
            if line.startswith('{"runtime"')]
    # --conc 2 is the ladder 1, 2; hello's two levels were not measured again
    assert sorted((r["workload"], r["conc"]) for r in runs) == [("cpu", 1), ("cpu", 2), ("hello", 1), ("hello", 2)]


def test_without_postgresql_the_db_workload_is_dropped_and_the_rest_runs(tmp_path, monkeypatch):
    """PostgreSQL absent and not installable: a message naming the package, the other workloads kept."""
    from experiments.harness import postgres, run

    def not_installable():
        raise postgres.PostgresMissing("PostgreSQL is not installed: install Debian's `postgresql` package")

    monkeypatch.setattr(postgres, "ensure_installed", not_installable)
    (tmp_path / "env.json").write_text("{}")
    plan = Plan(runtimes=["hybrid"], workloads=["hello", "db"], levels=[1])
    with run.database_for(plan, tmp_path) as database:
        assert database is None
    assert plan.workloads == ["hello"]
    assert "postgresql" in json.loads((tmp_path / "env.json").read_text())["notes"][0]


@pytest.mark.skipif(not all(shutil.which(t) for t in ("wrk", "taskset")) or bindir() is None
                    or importlib.util.find_spec("psycopg") is None,
                    reason="wrk, PostgreSQL or psycopg missing (psycopg has no free-threaded wheel)")
def test_the_db_workload_on_a_throwaway_postgres(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "--conc", "4", "--runtimes", "hybrid,asyncio",
         "--workloads", "db", "--duration", "1", "--warmup", "0", "--fairness", "0", "--pause", "0",
         "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run_dir, = tmp_path.glob("experiment-*")
    runs = [json.loads(line) for line in (run_dir / "runs.jsonl").read_text().splitlines()]
    assert {r["runtime"] for r in runs} == {"hybrid", "asyncio"}
    for r in runs:
        assert r["error"] is None and r["load"]["requests"] > 0 and sum(r["load"]["errors"].values()) == 0
        assert r["cost"]["db_cpu_us_per_request"] > 0
    assert {r["handler"] for r in runs if r["runtime"] == "asyncio"} == {"experiments.apps.db:fortunes_async"}


def _slowloris_tools_missing() -> bool:
    from experiments.hostile.slowloris import ensure_tool
    return not shutil.which("taskset") or ensure_tool("slowhttptest", "slowhttptest") is None


@pytest.mark.skipif(_slowloris_tools_missing(), reason="slowhttptest or taskset missing")
def test_slowloris_without_nginx_measures_the_servers_alone(tmp_path, monkeypatch, capsys):
    """nginx absent and not installable: a note naming the package, and the direct cases still measured."""
    from experiments.hostile import slowloris

    real = slowloris.ensure_tool
    monkeypatch.setattr(slowloris, "ensure_tool", lambda command, package: None if command == "nginx" else real(command, package))
    out = tmp_path / "slowloris.json"
    assert slowloris.main(["--runtimes", "hybrid", "--modes", "headers", "--proxies", "direct,nginx",
                           "--header-timeouts", "10", "--connections", "50", "--seconds", "4", "-o", str(out)]) == 0
    assert "Debian's `nginx` package" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["tools"]["nginx"] is False
    r, = doc["results"]
    assert r["proxy"] is None and r["server_alive"] and "error" not in r
    assert r["probe"]["success_rate"] == 1.0 and r["slowhttptest"]["peak_connected"] > 0
    assert r["server_cost"]["peak_threads"] >= 1 and r["kernel_tcp_peak_pages"] >= 0


@pytest.mark.skipif(_slowloris_tools_missing() or not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(),
                    reason="slowhttptest, taskset or nginx missing")
def test_slowloris_behind_unbuffered_nginx(tmp_path):
    out = tmp_path / "slowloris.json"
    run = subprocess.run(
        [sys.executable, "-m", "experiments.hostile.slowloris", "--runtimes", "threaded", "--modes", "body",
         "--proxies", "nginx-unbuffered", "--header-timeouts", "10", "--connections", "50", "--seconds", "4",
         "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    r, = json.loads(out.read_text())["results"]
    assert r["proxy"] == "nginx" and r["buffering"] is False and "error" not in r
    assert r["probe"]["success_rate"] == 1.0 and r["nginx_cost"]["peak_rss_kib"] > 0


@pytest.mark.skipif(not shutil.which("taskset"), reason="taskset missing")
def test_idle_connections_counts_what_a_tiny_pinned_pool_answers_queues_and_refuses(tmp_path):
    """pinned on 2 workers and a queue of 5: 2 answered, a few waiting, the rest refused; hybrid answers all."""
    tiny = "pinned:--max-workers 2 --max-queued-requests 5"
    run = subprocess.run(
        [sys.executable, "-m", "experiments.benches.idle_connections", "--idle", "50", "--probes", "3",
         "--runtimes", "pinned,hybrid", "--server-arg", tiny, "--open-timeout", "5", "--probe-timeout", "2",
         "--results-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    doc = json.loads((tmp_path / "idle_connections-latest.json").read_text())
    assert doc["keep_alive_timeout"] == 600
    rows = {row["runtime"]: row for row in doc["rows"]}
    for row in rows.values():
        counts = row["connections"]
        assert sum(counts.values()) == 50 and counts["other"] == 0, counts
        assert row["answered_still_open"] == counts["answered"]  # a 600 s keep-alive: none closed
        assert len(row["probes"]) == sum(row["probe_outcomes"].values()) == 3
        assert row["threads_with_idle"] >= 1 and row["rss_kib_with_idle"] > 0  # the older fields are kept
    pinned, hybrid = rows["pinned"], rows["hybrid"]
    assert pinned["server_args"] == ["--max-workers", "2", "--max-queued-requests", "5"] and hybrid["server_args"] == []
    # 2 workers keep their connections; up to 5 more queue (fewer if the workers had not yet taken theirs)
    assert pinned["connections"]["answered"] == 2, pinned["connections"]
    assert 1 <= pinned["connections"]["waiting"] <= 5 and pinned["connections"]["refused"] >= 43, pinned["connections"]
    assert set(pinned["probe_outcomes"]) <= {"503", "timeout"} and pinned["probe_ms"]["median"] is None
    assert hybrid["connections"] == {"answered": 50, "refused": 0, "waiting": 0, "other": 0}
    assert hybrid["probe_outcomes"] == {"200": 3} and hybrid["probe_ms"]["median"] > 0
