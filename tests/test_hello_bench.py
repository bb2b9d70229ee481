"""make bench: the server table, the selector floors, and how rounds become medians and verdicts.

The report is checked on made-up runs (no servers, no wrk): the arithmetic and
the verdict rules are what can be wrong there. The floors are real servers on
loopback, driven with a real client.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from experiments.benches import report as bench_report
from experiments.benches import servers as bench_servers
from experiments.apps.peers import CANNED
from experiments.harness.servers import free_port


def run(server: str, conns: int, round_no: int, rps: float, p99: float = 1000.0, cpu: float = 50.0) -> dict:
    return {"server": server, "conns": conns, "round": round_no, "requests_per_s": rps, "requests": int(rps),
            "latency_us": {"p50": p99 / 2, "p99": p99}, "cpu_us_per_request": cpu, "errors": {"read": 0},
            "other_cpus": 0.0, "wrk_cpu_share": 0.5}


def test_verdicts_read_the_spread_of_the_rounds():
    def summary(*values):
        return bench_report.spread_of(values)
    assert bench_report.verdict(summary(1.3, 1.25, 1.4), ">=", 1.2) == "met"
    assert bench_report.verdict(summary(1.1, 1.15, 1.19), ">=", 1.2) == "NOT met"
    assert bench_report.verdict(summary(1.1, 1.3, 1.25), ">=", 1.2) == "inconclusive"
    assert bench_report.verdict(summary(2.0, 2.4), "<=", 2.5) == "met"
    assert bench_report.verdict(summary(2.6, 3.0), "<=", 2.5) == "NOT met"
    assert bench_report.verdict(summary(2.4, 2.6), "<=", 2.5) == "inconclusive"
    assert bench_report.verdict(None, ">=", 1.2) == "not measured"


def test_ratios_are_taken_within_each_round_then_summarised():
    runs = [run("astra-asyncio/httptools", 64, 1, 12_000), run("uvicorn-httptools-uvloop", 64, 1, 10_000),
            run("astra-asyncio/httptools", 64, 2, 9_000), run("uvicorn-httptools-uvloop", 64, 2, 6_000),
            run("astra-asyncio/httptools", 64, 3, 13_000)]  # round 3 has no uvicorn: no ratio
    ratios = bench_report.per_round(runs, ["astra-asyncio/httptools"], ["uvicorn-httptools-uvloop"], 64, "rps")
    assert ratios == pytest.approx([1.2, 1.5])
    checks = bench_report.check_targets(runs, ["asyncio"], {"astra-asyncio/httptools", "uvicorn-httptools-uvloop"},
                                        [64])
    check, = [c for c in checks if c["theirs"] == ["uvicorn-httptools-uvloop"]]
    assert (check["target"], check["verdict"]) == (1.2, "met")
    assert check["ratio"]["median"] == pytest.approx(1.35)


def test_the_best_runtime_against_the_best_granian_and_cpu_against_the_own_floor():
    runs = [run("astra-threaded/httptools", 64, 1, 10_000, cpu=60), run("astra-trio/httptools", 64, 1, 14_000, cpu=70),
            run("granian-wsgi", 64, 1, 20_000), run("granian-asgi", 64, 1, 30_000),
            run("floor-threads", 64, 1, 50_000, cpu=20), run("floor-trio", 64, 1, 40_000, cpu=35)]
    runs[3]["wrk_cpu_share"] = 0.95  # granian-asgi: wrk was the limit, its figure a lower bound
    planned = {r["server"] for r in runs}
    checks = {c["check"]: c for c in bench_report.check_targets(runs, ["threaded", "trio"], planned, [64])}
    best = checks["best astra httptools vs best granian"]
    assert best["ratio"]["median"] == pytest.approx(14_000 / 30_000) and best["verdict"] == "NOT met"
    assert best["wrk_bound"] == ["granian-asgi"]
    cpu = checks["astra-threaded/httptools CPU/request vs its floor floor-threads"]
    assert cpu["ratio"]["median"] == pytest.approx(3.0) and cpu["verdict"] == "NOT met"
    assert checks["astra-trio/httptools CPU/request vs its floor floor-trio"]["verdict"] == "met"  # 2.0x
    # Targets whose peer was not in the plan are left out, not reported as failures.
    assert not any("uvicorn" in label for label in checks)


def test_summary_rows_carry_medians_spreads_and_the_floor_multiple():
    runs = [run("astra-hybrid/h11", 64, k, rps, p99=p99, cpu=cpu)
            for k, rps, p99, cpu in ((1, 9_000, 900, 100), (2, 10_000, 1_100, 90), (3, 11_000, 800, 80))]
    runs += [run("floor-reactor-pool", 64, k, 40_000, cpu=cpu) for k, cpu in ((1, 25), (2, 30), (3, 40))]
    row = bench_report.summarise(runs)[0]
    assert row["server"] == "astra-hybrid/h11" and row["rounds"] == 3 and row["requests_per_s"] == 10_000
    assert row["summary"]["p99_us"] == {"median": 900, "min": 800, "max": 1_100}
    assert row["own_floor"] == "floor-reactor-pool"
    assert row["cpu_x_own_floor"]["per_round"] == pytest.approx([4.0, 3.0, 2.0])
    assert bench_report.runtime_of("astra-hybrid/httptools@6c80265") == "hybrid"
    assert "| astra-hybrid/h11 (floor-reactor-pool) | 10,000 [9,000-11,000] |" in "\n".join(
        bench_report.table_markdown([row], 64))


def test_every_runtime_has_an_own_floor_and_both_parsers_are_asked_for():
    from astra import available_runtimes
    assert set(available_runtimes()) <= set(bench_servers.FLOOR_OF)
    assert set(bench_servers.FLOOR_OF.values()) <= set(bench_servers.DEFAULT_PEERS)
    servers, pairs = bench_servers.choose_servers(["asyncio"], ["h11", "httptools"], [], "sync", [])
    assert list(servers) == ["astra-asyncio/h11", "astra-asyncio/httptools"] and pairs == []
    argv = servers["astra-asyncio/httptools"][0]
    assert argv[argv.index("--http1-parser") + 1] == "httptools"
    assert argv[argv.index("--loop") + 1] == "asyncio"  # the loop floor-asyncio runs on


@pytest.mark.parametrize("floor", ["floor-selectors", "floor-reactor-pool"])
def test_selector_floors_answer_keep_alive_and_pipelined_requests(floor):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "experiments.apps.peers", floor, str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            sock.sendall(request)
            expected = len(CANNED)
            assert receive(sock, expected).endswith(b"Hello World!")
            sock.sendall(request * 3)  # pipelined: three answers
            assert receive(sock, 3 * expected).count(b"HTTP/1.1 200 OK") == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def receive(sock: socket.socket, size: int) -> bytes:
    data, deadline = b"", time.monotonic() + 5
    while len(data) < size and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
