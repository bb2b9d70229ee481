"""Load generators for the experiment harness: wrk and h2load, results as plain dicts.

Method. A target is one server process on one loopback address:port. One
client process cannot hold a large concurrency (20,000 open files per process,
~28k ephemeral ports per destination), so ``conns`` is split as evenly as
possible over the targets (``split``), one load-generator process per target,
all started together; we wait for all and merge. Hosts must be in 127.0.0.0/8
or "localhost". Each process runs one thread (``-t1``) and, given a CPU list,
is pinned with ``taskset -c`` (all on the same list); without taskset we run
unpinned and say so in ``notes``. wrk reports through
``experiments/load/wrk_json.lua`` (one ``JSON {...}`` line); it takes whole seconds
for ``-d`` and ``--timeout`` (the timeout is rounded up), and refuses to start
(exit 1) if its first connection is refused. h2load runs in duration mode
(``-D``, ``--warm-up-time``) and its text summary is parsed (us/ms/s). Its
per-client ``req/s`` line is the fairness signal: min 0.00 means at least one
client completed nothing in the measured window (or under 0.005 req/s: two decimals).

Merging (read before comparing numbers). Counters and rates are summed; means
are weighted by requests (by clients for per-client req/s); minima and maxima
are exact. Percentiles are NOT: wrk gives only each process's own, and the
merged value is the maximum over processes, a conservative upper bound on the
pooled percentile. Standard deviations are likewise the maximum, not pooled.
h2load's ``--log-file`` (``log_percentiles=True``) has one row per request, so
its percentiles are pooled exactly (nearest rank).

What h2load 1.52 does not tell (read in its source, then checked):
* ``--log-file`` rows are ``start_us_since_epoch TAB status TAB elapsed_us``
  (status -1 for a failed stream), measured phase only, one write(2) per
  request (a cost to the load generator, hence off by default). No client or
  connection id, and ``-v`` only echoes response bytes: how many clients got
  zero responses cannot be counted, so ``clients_starved`` is always None.
  Per-client req/s covers every client that tried to connect in the measured
  phase, refused ones included at 0 (clients that failed during warm-up drop
  out), so ``client_rps["min"] == 0`` says "some", not how many.
* ``-T`` (connection-active timeout) is armed only once a client has no
  requests left, which never happens with ``-D``: it is inert (a 2.5 s response
  completes under ``-T 1``). ``-N`` (inactivity) fires, but then h2load aborts
  (libev assertion). So h2load has no working request timeout here: we pass
  ``-T`` as documented and guard by wall clock; slow requests show up as
  ``started`` minus ``done`` in ``per_process``.
* Refused connections are not errors to h2load: it reports 0 requests, exit 0
  (we add a note when a process never established a connection).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().with_name("wrk_json.lua")
SLACK_S = 60.0  # the most wall-clock allowance beyond duration + warm-up + timeout


def _slack(conns: int) -> float:
    """Allowance for connecting and shutting down: ~1 s per 1,000 connections, at least 10 s.

    A flat minute let an h2load stuck on a starved server (it waits for every
    client to connect before its clock starts) hold a sweep for 73 s a level.
    """
    return min(SLACK_S, 10.0 + conns / 1000)
FD_MARGIN = 64  # files a load generator needs besides its connections
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


class LoadGenError(RuntimeError):
    """A load-generator process failed, timed out, or printed nothing usable."""


@dataclass(frozen=True)
class Target:
    host: str  # must be in 127.0.0.0/8 (or "localhost")
    port: int

    def __post_init__(self) -> None:
        if self.host != "localhost":
            try:
                loopback = ipaddress.IPv4Address(self.host) in ipaddress.IPv4Network("127.0.0.0/8")
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(f"target host {self.host!r} is not in 127.0.0.0/8")
        if not 0 < self.port < 65536:
            raise ValueError(f"target port {self.port!r} out of range")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


def split(conns: int, parts: int) -> list[int]:
    """``conns`` over ``parts`` as evenly as possible, larger shares first; each >= 1."""
    if parts < 1 or conns < parts:
        raise ValueError(f"cannot split {conns} connections over {parts} parts (each needs >= 1)")
    share, extra = divmod(conns, parts)
    return [share + 1] * extra + [share] * (parts - extra)


def tool_versions() -> dict[str, str | None]:
    """First line of ``wrk -v`` / ``h2load --version``; None when the tool is missing."""
    versions: dict[str, str | None] = {"wrk": None, "h2load": None}
    for tool, flag in (("wrk", "-v"), ("h2load", "--version")):
        if shutil.which(tool):
            out = subprocess.run([tool, flag], capture_output=True, text=True, timeout=10)  # wrk -v exits 1
            versions[tool] = next(iter((out.stdout + out.stderr).splitlines()), "").strip() or None
    return versions


# Parsers (pure functions of a process's stdout) ------------------------------------

def parse_wrk_json(text: str) -> dict:
    """The object on wrk_json.lua's ``JSON {...}`` line (the last one, if several)."""
    lines = [line for line in text.splitlines() if line.startswith("JSON ")]
    if not lines:
        raise ValueError("no 'JSON {...}' line in wrk output")
    return json.loads(lines[-1][len("JSON "):])


_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}
_STAT = r"\s*:\s+" + r"\s+".join([r"([\d.]+)(us|ms|s)?"] * 4) + r"\s+([\d.]+)%"


def _stat_line(text: str, label: str, durations: bool) -> dict | None:
    match = re.search(r"^" + re.escape(label) + _STAT, text, re.M)
    if match is None:
        return None
    values = []
    for i in range(4):
        number, unit = float(match.group(2 * i + 1)), match.group(2 * i + 2)
        values.append(number * _UNIT_US[unit or "us"] if durations else number)
    return dict(zip(("min", "max", "mean", "sd"), values)) | {"within_sd_pct": float(match.group(9))}


def parse_h2load(text: str) -> dict:
    """h2load's summary: counters, status classes, and the min/max/mean/sd stat lines.

    Durations are in microseconds; ``client_rps`` is per-client requests/s.
    """
    names = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    requests = re.search(r"^requests: " + ", ".join(rf"(\d+) {name}" for name in names), text, re.M)
    if requests is None:
        raise ValueError("no 'requests:' line in h2load output")
    result: dict = dict(zip(names, map(int, requests.groups())))
    finished = re.search(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", text, re.M)
    rps = _stat_line(text, "req/s", False)
    if finished is None or rps is None:
        raise ValueError("h2load output lacks the 'finished in' or per-client 'req/s' line")
    result["finished_in_s"] = float(finished.group(1)) * _UNIT_US[finished.group(2)] / 1e6
    result["requests_per_s"] = float(finished.group(3))
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    result["status"] = dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, codes.groups() if codes else [0] * 4)))
    traffic = re.search(r"^traffic: \S+ \((\d+)\) total", text, re.M)
    result["bytes"] = int(traffic.group(1)) if traffic else None
    protocol = re.search(r"^Application protocol: (\S+)", text, re.M)
    result["protocol"] = protocol.group(1) if protocol else None
    result["request_time_us"] = _stat_line(text, "time for request", True)
    result["connect_time_us"] = _stat_line(text, "time for connect", True)
    result["ttfb_us"] = _stat_line(text, "time to 1st byte", True)
    result["client_rps"] = rps
    return result


def parse_h2load_log(lines, into: Counter | None = None) -> Counter:
    """Count elapsed microseconds of completed requests (status != -1) in ``--log-file`` rows."""
    counts = Counter() if into is None else into
    for line in lines:
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1] != "-1":
            counts[int(fields[2])] += 1
    return counts


def percentiles(counts: Counter) -> dict | None:
    """Nearest-rank p50/p90/p99/p99.9, max and mean of a value -> count histogram."""
    n = sum(counts.values())
    if n == 0:
        return None
    result, seen, todo = {}, 0, list(PERCENTILES)
    for value in sorted(counts):
        seen += counts[value]
        while todo and seen >= math.ceil(round(todo[0][1] * n / 100, 6)):
            result[todo.pop(0)[0]] = value
    result["max"] = max(counts)
    result["mean"] = sum(v * c for v, c in counts.items()) / n
    return result


# Running processes ---------------------------------------------------------------

def _check(targets: list[Target], path: str) -> None:
    if not targets or not all(isinstance(t, Target) for t in targets):
        raise ValueError(f"need a non-empty list of Target: {targets!r}")
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/': {path!r}")


def _pinning(cpus: list[int] | None) -> tuple[list[str], list[int] | None, list[str]]:
    """(argv prefix, the CPUs actually pinned to, notes)."""
    if not cpus:
        return [], None, ["load generators unpinned (no cpu list given)"]
    if shutil.which("taskset") is None:
        return [], None, [f"taskset missing: load generators NOT pinned to CPUs {cpus}"]
    return ["taskset", "-c", ",".join(map(str, cpus))], list(cpus), []


def _ensure_fds(per_process: int) -> None:
    """Children inherit our soft open-file limit: raise it (process-wide) if too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # RLIM_INFINITY is -1
    need = per_process + FD_MARGIN
    if 0 <= hard < need:
        raise ValueError(f"{per_process} connections per process exceed the open-file limit ({hard}): add targets")
    if 0 <= soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run_all(commands: list[list[str]], wall_s: float, workdir: Path) -> list[tuple[str, str]]:
    """Start every command at once, wait for all: (stdout, stderr) of each.

    Raises LoadGenError when one cannot start, exits non-zero, or outlives
    ``wall_s``; every process still running then is killed (ours only, by Popen).
    """
    procs, files = [], []
    deadline = time.monotonic() + wall_s
    try:
        for i, argv in enumerate(commands):
            out, err = open(workdir / f"{i}.out", "w+"), open(workdir / f"{i}.err", "w+")
            files += [out, err]
            try:
                procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err))
            except OSError as e:
                raise LoadGenError(f"cannot start {argv}: {e}") from None
        outputs = []
        for proc, out, err in zip(procs, files[::2], files[1::2]):
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise LoadGenError(f"still running after {wall_s:.0f} s: {proc.args}") from None
            out.seek(0)
            err.seek(0)
            text, errors = out.read(), err.read()
            if proc.returncode != 0:
                raise LoadGenError(f"{proc.args} exited with status {proc.returncode}: {errors.strip()[-500:]}")
            outputs.append((text, errors))
        return outputs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for f in files:
            f.close()


def _weighted_mean(values: list[float], weights: list[float]) -> float:
    total = sum(weights)
    return sum(v * w for v, w in zip(values, weights)) / total if total else 0.0


# wrk -----------------------------------------------------------------------------

def run_wrk(targets: list[Target], conns: int, duration: float, *, cpus: list[int] | None = None,
            timeout: float = 30.0, path: str = "/") -> dict:
    """One ``wrk -t1`` per target, ``conns`` split over them, all at once; merged results.

    Merged ``latency_us``: mean weighted by requests, max exact, and each
    percentile the MAXIMUM over processes (a conservative upper bound, not the
    pooled percentile).
    """
    _check(targets, path)
    if duration < 1 or duration != int(duration):
        raise ValueError(f"wrk takes whole seconds: duration {duration!r}")
    shares = split(conns, len(targets))
    prefix, pinned, notes = _pinning(cpus)
    _ensure_fds(shares[0])
    timeout_s = max(1, math.ceil(timeout))
    commands = [prefix + ["wrk", "-t1", f"-c{n}", f"-d{int(duration)}s", "--timeout", f"{timeout_s}s",
                          "--latency", "-s", str(LUA_SCRIPT), target.url + path[1:]]
                for target, n in zip(targets, shares)]
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        outputs = _run_all(commands, duration + timeout_s + _slack(conns), Path(tmp))
    per_process = []
    for argv, (text, errors) in zip(commands, outputs):
        try:
            per_process.append(parse_wrk_json(text))
        except ValueError:
            raise LoadGenError(f"no JSON line from {argv}: {errors.strip()[-500:]}") from None
    counts = [p["requests"] for p in per_process]
    latency = {name: max(p["latency_us"][name] for p in per_process) for name, _ in PERCENTILES}
    latency["max"] = max(p["latency_us"]["max"] for p in per_process)
    latency["mean"] = _weighted_mean([p["latency_us"]["mean"] for p in per_process], counts)
    return {
        "tool": "wrk", "version": tool_versions()["wrk"], "processes": len(targets), "conns": conns,
        "duration_s": float(duration), "timeout_s": timeout_s, "cpus": pinned, "notes": notes,
        "requests": sum(counts),
        "requests_per_s": sum(p["requests_per_s"] for p in per_process),
        "errors": {kind: sum(p["errors"][kind] for p in per_process)
                   for kind in ("connect", "read", "write", "status", "timeout")},
        "latency_us": latency,
        "per_process": per_process, "commands": commands,
    }


# h2load --------------------------------------------------------------------------

def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def run_h2load(targets: list[Target], conns: int, duration: float, *, h1: bool = True, streams: int = 1,
               cpus: list[int] | None = None, warmup: float = 0.0, timeout: float = 30.0,
               log_percentiles: bool = False, path: str = "/") -> dict:
    """One ``h2load -t1`` per target (``--h1`` for HTTP/1.1), all at once; merged results.

    ``request_time_us`` and ``client_rps``: min of minima, max of maxima, mean
    weighted by requests (by clients for ``client_rps``), sd the maximum over
    processes. ``latency_us`` is pooled exactly from ``--log-file`` when
    ``log_percentiles``, else None. ``clients_starved`` is always None: h2load
    gives no per-client counts (see the module docstring).
    """
    _check(targets, path)
    if duration <= 0 or warmup < 0 or streams < 1:
        raise ValueError("need duration > 0, warmup >= 0, streams >= 1")
    shares = split(conns, len(targets))
    prefix, pinned, notes = _pinning(cpus)
    _ensure_fds(shares[0])
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        logs = [Path(tmp) / f"h2load-{i}.log" for i in range(len(targets))]
        commands = [prefix + ["h2load", *(["--h1"] if h1 else []), "-t1", f"-c{n}", f"-m{streams}",
                              f"-D{_ms(duration)}", f"--warm-up-time={_ms(warmup)}", f"-T{_ms(timeout)}",
                              *([f"--log-file={log}"] if log_percentiles else []), target.url + path[1:]]
                    for target, n, log in zip(targets, shares, logs)]
        outputs = _run_all(commands, warmup + duration + timeout + _slack(conns), Path(tmp))
        latency = _pooled_latency(logs) if log_percentiles else None
    per_process = _parse_h2load_outputs(commands, outputs, notes)
    return {
        "tool": "h2load", "version": tool_versions()["h2load"], "processes": len(targets), "conns": conns,
        "duration_s": float(duration), "warmup_s": float(warmup), "h1": h1, "streams": streams,
        "cpus": pinned, "notes": notes,
        "requests": sum(p["succeeded"] for p in per_process),
        "requests_per_s": sum(p["requests_per_s"] for p in per_process),
        **{key: sum(p[key] for p in per_process) for key in ("failed", "errored", "timeout")},
        "status": {cls: sum(p["status"][cls] for p in per_process) for cls in ("2xx", "3xx", "4xx", "5xx")},
        **_merged_timings(per_process, shares),
        "clients_starved": None,
        "latency_us": latency,
        "per_process": per_process, "commands": commands,
    }


def _pooled_latency(logs: list[Path]) -> dict | None:
    """Exact percentiles over every process's ``--log-file`` (one line per request)."""
    counts = Counter()
    for log in logs:
        if log.exists():
            with open(log) as f:
                parse_h2load_log(f, counts)
    return percentiles(counts)


def _parse_h2load_outputs(commands: list[list[str]], outputs, notes: list[str]) -> list[dict]:
    per_process = []
    for argv, (text, errors) in zip(commands, outputs):
        try:
            per_process.append(parse_h2load(text))
        except ValueError as e:
            raise LoadGenError(f"{e} from {argv}: {errors.strip()[-500:]}") from None
        if per_process[-1]["protocol"] is None:
            notes.append(f"no connection was established by {argv}")
    return per_process


def _merged_timings(per_process: list[dict], shares: list[int]) -> dict:
    """h2load's own request-time and per-client-rate summaries, merged over processes."""
    timed = [(p["request_time_us"], p["done"]) for p in per_process if p["done"] > 0]  # 0us = no data
    rps = [p["client_rps"] for p in per_process]
    return {
        "request_time_us": {
            "min": min((t["min"] for t, _ in timed), default=0.0),
            "max": max((t["max"] for t, _ in timed), default=0.0),
            "mean": _weighted_mean([t["mean"] for t, _ in timed], [n for _, n in timed]),
            "sd": max((t["sd"] for t, _ in timed), default=0.0),
        },
        "client_rps": {
            "min": min(r["min"] for r in rps), "max": max(r["max"] for r in rps),
            "mean": _weighted_mean([r["mean"] for r in rps], shares), "sd": max(r["sd"] for r in rps),
        },
    }
