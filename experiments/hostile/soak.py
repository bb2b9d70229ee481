"""Soak: every runtime under a steady normal load and a rotating set of hostile clients; does it stay flat?

``python -m experiments.hostile.soak [--minutes 6] [--runtimes ...] [--protocols h1,h2]
[--attack-seconds 40] [--lanes auto] [--rate 50] [-o results/]`` (about 30 minutes for the five
runtimes by default; not part of CI).

Per runtime, a fresh server (``experiments.apps.soak``, default options: the
production timeouts are what an attacker meets) runs ``--minutes`` in three
phases:

1. warm-up (15%, 3 to 30 s): normal visitors only, so "start" is a server
   that has made its lazy allocations;
2. hostile (the rest): the attacks of ``experiments.hostile.clients`` for the
   chosen protocols, in the same rotation order on every runtime, ``lanes``
   at a time (``auto``: enough for each attack to run at least once), each
   for up to ``--attack-seconds`` (40 s: past the 30 s ``io_timeout``, so the
   server's timeouts get their chance);
3. cool-down (20%, 3 to 60 s): normal visitors only, the attackers gone.

Throughout, normal visitors (``experiments.hostile.visitors``, one process per
protocol, ``--rate`` requests a second on keep-alive connections) report p50
and p99 per ``--interval``, and the server process's RSS, threads, open
descriptors and CPU are sampled every second (psutil). The server is pinned
to CPU 0, visitors and attackers to CPU 1, the attackers niced so they
cannot starve the visitors' client. The verdict rule for "flat" lives in
``experiments.hostile.soak_report`` and was fixed before any run.

The code under test (astra, protocols, runtimes, experiments) is copied at
the start and every process runs from the copy, so edits to the checkout
during the run do not split it into different servers (``--live`` runs the
checkout itself). Output: ``results/soak-<timestamp>/`` with ``soak.json``
(every sample, interval and attack, and the copied code's digest),
``soak.png``, ``README.md`` and ``code.diff`` (the uncommitted changes measured);
``--render DIR`` writes a run's README and figure again from its JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psutil

from astra import available_runtimes

from ..harness.servers import ROOT, ServerProcess
from . import soak_report
from .clients import attacks, run_attack

APP = "experiments.apps.soak:app"
QUIET = Path("/tmp/astra-quiet")
MIN_ATTACK = 5.0  # seconds: a lane with less time left starts nothing more


def wait_until_quiet() -> None:
    """Someone is benchmarking while /tmp/astra-quiet exists: a soak would spoil their numbers."""
    while QUIET.exists():
        print("waiting: /tmp/astra-quiet exists", flush=True)
        time.sleep(30)


def phases(minutes: float) -> dict[str, float]:
    total = minutes * 60
    warmup = min(30.0, max(3.0, 0.15 * total))
    cooldown = min(60.0, max(3.0, 0.20 * total))
    return {"warmup_end": warmup, "hostile_end": max(warmup, total - cooldown), "total": total}


def lanes_for(names: list[str], attack_seconds: float, hostile_seconds: float, asked: str) -> int:
    """``auto``: enough lanes for the rotation to go round once in the hostile phase (at least 2)."""
    if asked != "auto":
        return max(1, int(asked))
    rounds = max(1.0, hostile_seconds / max(MIN_ATTACK, attack_seconds))
    return max(2, min(len(names), math.ceil(len(names) / rounds)))


def client_prefix(nice: int = 0) -> list[str]:
    cpus = ["taskset", "-c", "1"] if (os.cpu_count() or 1) >= 2 else []
    return cpus + (["nice", "-n", str(nice)] if nice else [])


# Sampling the server ----------------------------------------------------------------------

class Sampler:
    """RSS, threads, descriptors and CPU of one process, every ``interval`` seconds, from ``t0``."""

    def __init__(self, pid: int, t0: float, interval: float = 1.0) -> None:
        self.proc, self.t0, self.interval = psutil.Process(pid), t0, interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_cpu, last_t = None, None
        while not self._stop.wait(self.interval if self.samples else 0):
            try:
                with self.proc.oneshot():
                    times = self.proc.cpu_times()
                    row = {"t": round(time.time() - self.t0, 2), "rss_mib": round(self.proc.memory_info().rss / 2**20, 2),
                           "threads": self.proc.num_threads(), "fds": self.proc.num_fds()}
            except psutil.Error:
                return  # the server is gone: the samples say when
            cpu, now = times.user + times.system, time.monotonic()
            row["cpu_pct"] = None if last_cpu is None else round(100 * (cpu - last_cpu) / (now - last_t), 1)
            last_cpu, last_t = cpu, now
            self.samples.append(row)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class JsonLines:
    """Reads a child's JSON lines on a thread, stamping each with seconds since ``t0``."""

    def __init__(self, argv: list[str], t0: float, log: IO, cwd: Path) -> None:
        self.t0, self.rows = t0, []
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=log, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            row["t"] = round(row.get("time", time.time()) - self.t0, 2)
            self.rows.append(row)

    def wait(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        self._thread.join(5)

    def stop(self) -> None:
        """Our own child, by its handle (taskset and nice exec: it is the client itself)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def freeze_tree(dest: Path) -> dict[str, str]:
    """Copy the code under test to ``dest`` and run everything from there; what was copied.

    Colleagues edit the checkout while a half-hour soak runs: without a copy,
    each runtime would be measured on different code. The digest (over every
    copied .py file) names the code measured; ``git diff`` beside it says
    how it differs from the commit.
    """
    digest = hashlib.sha256()
    for package in ("astra", "protocols", "runtimes", "experiments"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
        for path in sorted((dest / package).rglob("*.py")):
            digest.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
    return {"commit": _commit(), "tree_sha256": digest.hexdigest()[:16]}


# The hostile rotation (runs in its own process: --hostile-runner) -----------------------------

def hostile_runner(port: int, names: list[str], seconds: float, attack_seconds: float, lanes: int) -> None:
    """``lanes`` threads take the next attack of the rotation until ``seconds`` are up; a JSON line each."""
    end = time.monotonic() + seconds
    rotation, lock = itertools.cycle(names), threading.Lock()

    def lane() -> None:
        while (left := end - time.monotonic()) >= MIN_ATTACK:
            with lock:
                name = next(rotation)
            started = time.time()
            seen = run_attack(name, "127.0.0.1", port, min(attack_seconds, left))
            with lock:
                print(json.dumps({"time": started, "started": started, "ended": time.time(), **seen.to_dict()}),
                      flush=True)
    threads = [threading.Thread(target=lane) for _ in range(lanes)]
    for i, thread in enumerate(threads):
        thread.start()
        time.sleep(min(1.0, seconds / 50) if i < lanes - 1 else 0)  # not all connection storms at once
    for thread in threads:
        thread.join()


# One runtime ---------------------------------------------------------------------------------

def soak_runtime(runtime: str, plan: dict, out: Path, tree: Path) -> dict:
    wait_until_quiet()
    with open(out / f"server-{runtime}.log", "w") as log, open(out / f"clients-{runtime}.log", "w") as clog:
        server = ServerProcess([sys.executable, "-m", "astra", APP, "--runtime", runtime, "--bind", "{host}:{port}"],
                               cpus=[0] if (os.cpu_count() or 1) >= 2 else None, log=log, cwd=tree)
        run: dict[str, Any] = {"runtime": runtime}
        children: list[JsonLines] = []

        def spawn(argv: list[str]) -> JsonLines:
            children.append(JsonLines(argv, run["t0"], clog, tree))
            return children[-1]
        try:
            server.wait_ready()
            _drive(server, plan, run, spawn)
        except Exception as exc:  # one runtime's failure must not sink the others
            run["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            for child in children:
                child.stop()
            run["server_alive_at_end"] = server.proc.poll() is None
            run["server_end"] = server.stop(timeout=plan["shutdown_wait"])
    return run


def _drive(server: ServerProcess, plan: dict, run: dict, spawn: Callable[[list[str]], JsonLines]) -> None:
    ph = plan["phases"]
    t0 = run["t0"] = time.time()
    py = [sys.executable, "-m"]
    with Sampler(server.proc.pid, t0) as sampler:
        loads = {proto: spawn(client_prefix() + py + [
            "experiments.hostile.visitors", "--port", str(server.port), "--protocol", proto, "--seconds", str(ph["total"]),
            "--rate", str(plan["rate"]), "--interval", str(plan["interval"])]) for proto in plan["protocols"]}
        time.sleep(max(0.0, t0 + ph["warmup_end"] - time.time()))
        hostile = spawn(client_prefix(nice=5) + py + [
            "experiments.hostile.soak", "--hostile-runner", str(server.port), "--attacks", ",".join(plan["attacks"]),
            "--seconds", str(ph["hostile_end"] - ph["warmup_end"]), "--attack-seconds", str(plan["attack_seconds"]),
            "--lanes", str(plan["lanes"])])
        hostile.wait(ph["hostile_end"] - ph["warmup_end"] + 120)
        run["hostile_finished_at_s"] = round(time.time() - t0, 2)
        for load in loads.values():
            load.wait(max(0.0, t0 + ph["total"] - time.time()) + 30)
    run["samples"] = sampler.samples
    run["hostile"] = [{**r, "started": round(r["started"] - t0, 2), "ended": round(r["ended"] - t0, 2)}
                      for r in hostile.rows]
    run["latency"] = {p: [_tag_attacks(r, run["hostile"], plan["interval"]) for r in load.rows if "summary" not in r]
                      for p, load in loads.items()}
    run["latency_overall"] = {p: next((r["summary"] for r in load.rows if "summary" in r), None)
                              for p, load in loads.items()}


def _tag_attacks(row: dict, hostile: list[dict], interval: float) -> dict:
    """An interval's row, with the attacks that were running during it."""
    begin = row["t"] - interval
    row["attacks"] = sorted({h["attack"] for h in hostile if h["started"] < row["t"] and h["ended"] > begin})
    return row


def judge(run: dict, ph: dict) -> None:
    if "samples" not in run:
        return
    run["series"] = soak_report.summarize_samples(run["samples"], ph)
    run["latency_summary"] = {p: soak_report.summarize_latency(rows, ph) for p, rows in run["latency"].items()}
    run["outcomes"] = soak_report.combine_outcomes(run["hostile"])


# Command line -------------------------------------------------------------------------------

def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=6.0, help="per runtime (default 6: 30 min for five)")
    p.add_argument("--runtimes", default=",".join(available_runtimes()))
    p.add_argument("--protocols", default="h1,h2")
    p.add_argument("--attacks", help="comma-separated subset (default: every attack of the protocols)")
    p.add_argument("--attack-seconds", type=float, default=40.0)
    p.add_argument("--lanes", default="auto", help="attacks at once, or auto")
    p.add_argument("--rate", type=float, default=50.0, help="normal requests per second, per protocol")
    p.add_argument("--interval", type=float, default=5.0, help="seconds per latency interval")
    p.add_argument("-o", "--output", type=Path, default=ROOT / "results", help="parent of soak-<timestamp>/")
    p.add_argument("--live", action="store_true",
                   help="run the checkout as it is, not a copy frozen at the start (tests use this)")
    p.add_argument("--render", type=Path, metavar="DIR", help="write DIR's README.md and soak.png again from soak.json")
    p.add_argument("--hostile-runner", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> dict:
    protocols = args.protocols.split(",")
    names = args.attacks.split(",") if args.attacks else [n for n, (proto, _, _) in attacks().items()
                                                          if proto in protocols]
    unknown = set(names) - set(attacks())
    if unknown:
        raise SystemExit(f"unknown attacks: {', '.join(sorted(unknown))}")
    ph = phases(args.minutes)
    return {"minutes": args.minutes, "runtimes": args.runtimes.split(","), "protocols": protocols, "attacks": names,
            "attack_seconds": args.attack_seconds, "rate": args.rate, "interval": args.interval, "phases": ph,
            "lanes": lanes_for(names, args.attack_seconds, ph["hostile_end"] - ph["warmup_end"], args.lanes),
            "max_workers": 15 * (os.cpu_count() or 1), "shutdown_wait": 15.0}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.hostile_runner:
        hostile_runner(args.hostile_runner, args.attacks.split(","), args.seconds, args.attack_seconds, int(args.lanes))
        return 0
    if args.render:
        render(args.render)
        return 0
    plan = make_plan(args)
    out = args.output / f"soak-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    doc = {"when": datetime.now().isoformat(timespec="seconds"), "argv": " ".join(argv or sys.argv[1:]),
           "plan": plan, "rules": soak_report.FLAT_RULES, "runtimes": {}}
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM ends the soak as Ctrl-C does: children stopped
    with tempfile.TemporaryDirectory(prefix="astra-soak-") as tmp:
        tree = ROOT if args.live else Path(tmp)
        doc["code"] = {"commit": _commit(), "tree_sha256": "live checkout"} if args.live else freeze_tree(tree)
        _write_diff(out)
        print(f"soak: {len(plan['runtimes'])} runtimes x {plan['minutes']:g} min, {len(plan['attacks'])} attacks, "
              f"{plan['lanes']} at a time, code {doc['code']} -> {out}", flush=True)
        try:
            for runtime in plan["runtimes"]:
                run = soak_runtime(runtime, plan, out, tree)
                judge(run, plan["phases"])
                doc["runtimes"][runtime] = run
                print(f"  {runtime}: {_one_line(run)}", flush=True)
                (out / "soak.json").write_text(json.dumps(doc, indent=1, default=str))  # kept if a later one dies
        except KeyboardInterrupt:
            print("interrupted: writing what was measured", flush=True)
    if not doc["runtimes"]:
        return 1
    soak_report.plot(doc, out / "soak.png")
    (out / "README.md").write_text(soak_report.readme(doc))
    (out / "soak.json").write_text(json.dumps(doc, indent=1, default=str))
    print(f"wrote {out}/soak.json, soak.png, README.md", flush=True)
    return 0


def render(out: Path) -> None:
    """Judge a finished soak again from its soak.json and write its README.md and soak.png anew."""
    doc = json.loads((out / "soak.json").read_text())
    for run in doc["runtimes"].values():
        judge(run, doc["plan"]["phases"])
    soak_report.plot(doc, out / "soak.png")
    (out / "README.md").write_text(soak_report.readme(doc))
    (out / "soak.json").write_text(json.dumps(doc, indent=1, default=str))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _write_diff(out: Path) -> None:
    diff = subprocess.run(["git", "diff", "HEAD", "--", "astra", "protocols", "runtimes"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30).stdout
    if diff:
        (out / "code.diff").write_text(diff)


def _one_line(run: dict) -> str:
    if run.get("error"):
        return f"error: {run['error']}"
    s = run.get("series", {})
    parts = [f"{k} {v['start']:g}->{v['end']:g} (max {v['max']:g})" for k, v in s.items() if k != "cpu_pct"]
    return ", ".join(parts) + f"; {len(run.get('hostile', []))} attacks run; server {run.get('server_end')}"


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
