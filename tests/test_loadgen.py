"""experiments.load.tools: splitting, target validation, the output parsers, and one real run."""

from __future__ import annotations

import shutil
import socket
from collections import Counter

import pytest

from astra import Response, Server
from experiments.load import tools as loadgen
from experiments.load.tools import LoadGenError, Target, parse_h2load, parse_h2load_log, parse_wrk_json, split

H2LOAD_H1 = """\
starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 1s of main duration for measurements.
Warm-up started for thread #0.
progress: 100% of clients started
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Application protocol: http/1.1
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 1.00s, 4252.00 req/s, 597.94KB/s
requests: 4252 total, 4256 started, 4252 done, 4252 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 4252 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 597.94KB (612288) total, 402.87KB (412541) headers (space savings 0.00%), 49.84KB (51036) data
                     min         max         mean         sd        +/- sd
time for request:      273us      3.95ms       934us       320us    74.48%
time for connect:       13us        48us        34us        15us    75.00%
time to 1st byte:     1.02ms      1.90ms      1.48ms       377us    50.00%
req/s           :    1048.68     1073.72     1062.71       11.64    75.00%
"""

# The brief's sample: seconds and milliseconds, a starved client (min 0.00), elided lines.
H2LOAD_STARVED = """\
finished in 6.07s, 6237.67 req/s, 895.47KB/s
requests: 37426 total, 38426 started, 37426 done, 37426 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 37427 2xx, 0 3xx, 0 4xx, 0 5xx
time for request:      318us     59.75ms     15.69ms      5.06ms    71.86%
time for connect:  ...
time to 1st byte:  ...
req/s           :       0.00       75.18        6.23       19.06    90.20%
"""

WRK_OUT = """\
Running 1s test @ http://127.0.0.1:8080/
  1 threads and 4 connections
  Latency Distribution
     50%  627.00us
JSON {"requests": 6075, "duration_us": 1000851, "requests_per_s": 6069.83, "bytes": 874800, \
"errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 2}, \
"latency_us": {"p50": 627, "p90": 997, "p99": 1506, "p99.9": 4559, "max": 6089, "mean": 660}}
"""


@pytest.mark.parametrize("conns, parts, expected", [
    (25000, 3, [8334, 8333, 8333]), (4, 2, [2, 2]), (5, 5, [1] * 5), (7, 1, [7]), (10, 4, [3, 3, 2, 2]),
])
def test_split(conns, parts, expected):
    assert split(conns, parts) == expected
    assert sum(split(conns, parts)) == conns


@pytest.mark.parametrize("conns, parts", [(2, 3), (0, 1), (5, 0)])
def test_split_refuses_empty_parts(conns, parts):
    with pytest.raises(ValueError):
        split(conns, parts)


def test_targets_must_be_loopback():
    assert Target("127.0.0.1", 8080).url == "http://127.0.0.1:8080/"
    assert Target("127.3.2.1", 1).url == "http://127.3.2.1:1/"
    Target("localhost", 80)
    for host in ("10.0.0.1", "128.0.0.1", "example.com", "::1", "0.0.0.0", ""):
        with pytest.raises(ValueError):
            Target(host, 80)
    with pytest.raises(ValueError):
        Target("127.0.0.1", 70000)


def test_runners_validate_before_starting_anything():
    with pytest.raises(ValueError):
        loadgen.run_wrk([Target("127.0.0.1", 1)], 4, 1.5)  # wrk takes whole seconds
    with pytest.raises(ValueError):
        loadgen.run_h2load([Target("127.0.0.1", 1)] * 3, 2, 1)  # fewer conns than targets
    with pytest.raises(ValueError):
        loadgen.run_wrk([Target("127.0.0.1", 1)], 25000, 1)  # more files than one process may open


def test_parse_h2load():
    r = parse_h2load(H2LOAD_H1)
    assert (r["total"], r["started"], r["done"], r["succeeded"]) == (4252, 4256, 4252, 4252)
    assert (r["failed"], r["errored"], r["timeout"]) == (0, 0, 0)
    assert r["requests_per_s"] == 4252.0 and r["finished_in_s"] == pytest.approx(1.0)
    assert r["status"] == {"2xx": 4252, "3xx": 0, "4xx": 0, "5xx": 0}
    assert r["bytes"] == 612288 and r["protocol"] == "http/1.1"
    assert r["request_time_us"] == pytest.approx({"min": 273, "max": 3950, "mean": 934, "sd": 320,
                                                  "within_sd_pct": 74.48})
    assert r["ttfb_us"]["min"] == pytest.approx(1020)
    assert r["client_rps"] == pytest.approx({"min": 1048.68, "max": 1073.72, "mean": 1062.71, "sd": 11.64,
                                             "within_sd_pct": 75.0})


def test_parse_h2load_units_and_starved_clients():
    r = parse_h2load(H2LOAD_STARVED)
    assert r["finished_in_s"] == pytest.approx(6.07)
    assert r["request_time_us"]["max"] == pytest.approx(59750) and r["request_time_us"]["sd"] == pytest.approx(5060)
    assert r["client_rps"]["min"] == 0.0
    assert r["connect_time_us"] is None and r["bytes"] is None and r["protocol"] is None
    seconds = parse_h2load(H2LOAD_STARVED.replace("59.75ms", "2.50s"))
    assert seconds["request_time_us"]["max"] == pytest.approx(2_500_000)


def test_parse_h2load_rejects_other_output():
    with pytest.raises(ValueError):
        parse_h2load("-D: value error 1.5\n")


def test_parse_wrk_json():
    r = parse_wrk_json(WRK_OUT)
    assert r["requests"] == 6075 and r["errors"]["timeout"] == 2
    assert r["latency_us"]["p99.9"] == 4559
    with pytest.raises(ValueError):
        parse_wrk_json("Running 1s test\n")


def test_log_percentiles():
    rows = [f"1795243087458293\t200\t{us}\n" for us in range(1, 1001)] + ["1795243087458293\t-1\t99999\n"]
    counts = parse_h2load_log(rows)
    assert sum(counts.values()) == 1000  # the failed stream is left out
    p = loadgen.percentiles(counts)
    assert (p["p50"], p["p90"], p["p99"], p["p99.9"], p["max"]) == (500, 900, 990, 999, 1000)
    assert p["mean"] == pytest.approx(500.5)
    assert loadgen.percentiles(Counter()) is None


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("h2load") is None,
                    reason="wrk and h2load are needed")
def test_real_runs_against_astra():
    handle = Server("127.0.0.1", 0, runtime="hybrid").start(lambda request: Response("Hello World!"))
    try:
        host, port = handle.address[:2]
        targets = [Target(host, port), Target(host, port)]

        wrk = loadgen.run_wrk(targets, 4, 1)
        assert wrk["tool"] == "wrk" and wrk["version"] and wrk["processes"] == 2 and wrk["conns"] == 4
        assert wrk["requests"] > 0 and wrk["requests"] == sum(p["requests"] for p in wrk["per_process"])
        assert wrk["requests_per_s"] > 0
        assert wrk["errors"] == dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0)
        assert set(wrk["latency_us"]) == {"p50", "p90", "p99", "p99.9", "max", "mean"}
        assert wrk["latency_us"]["p50"] <= wrk["latency_us"]["max"]
        assert [c[c.index("wrk"):][:3] for c in wrk["commands"]] == [["wrk", "-t1", "-c2"]] * 2

        h2 = loadgen.run_h2load(targets, 4, 1, h1=True)
        assert h2["tool"] == "h2load" and h2["version"] and h2["processes"] == 2
        assert h2["requests"] > 0 and h2["requests_per_s"] > 0
        assert (h2["failed"], h2["errored"], h2["timeout"]) == (0, 0, 0)
        assert h2["status"]["2xx"] == h2["requests"]
        assert all(p["protocol"] == "http/1.1" for p in h2["per_process"])
        assert 0 < h2["request_time_us"]["min"] <= h2["request_time_us"]["mean"] <= h2["request_time_us"]["max"]
        assert h2["client_rps"]["min"] > 0
        assert h2["clients_starved"] is None and h2["latency_us"] is None
    finally:
        handle.shutdown()


def test_pinning_without_taskset_says_so(monkeypatch):
    if shutil.which("taskset"):
        assert loadgen._pinning([1, 2])[:2] == (["taskset", "-c", "1,2"], [1, 2])
    monkeypatch.setattr(loadgen.shutil, "which", lambda name: None)
    prefix, pinned, notes = loadgen._pinning([1])
    assert prefix == [] and pinned is None and "NOT pinned" in notes[0]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is needed")
def test_wrk_failure_is_a_loadgen_error():
    with socket.socket() as s:  # a port nobody listens on: wrk refuses to start (exit 1)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LoadGenError, match="exited with status"):
        loadgen.run_wrk([Target("127.0.0.1", port)], 1, 1)
