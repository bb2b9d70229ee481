"""``make claims``: run the experiments behind the seeds' claims and write the verdicts.

``python -m experiments.claims [--claim N ...] [--quick] [--dry-run] [--from DIR]``

Each claim (see :mod:`experiments.verdicts`) names the experiments it needs;
an experiment is either a harness configuration (``python -m experiments
run ...``, a subprocess, its results in its own directory) or a
micro-benchmark. The runner runs each needed experiment once, in this order,
into ``results/claims-<timestamp>/<experiment>/``, then judges every
requested claim from those files and writes ``REPORT.md`` there and at
``results/REPORT.md``. ``--from DIR`` judges an earlier run again without
measuring; ``--quick`` shortens every run (for smoke tests, not for verdicts).

``--interpreters standard-3.13,freethreaded`` runs the servers of every
harness experiment on each interpreter in the same interleaved rounds, and
each micro-benchmark once per interpreter (``micro+ft.json``); every claim is
then judged once per interpreter, by the same rule, and the report sets the
verdicts side by side (:mod:`experiments.interpreters`).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .calibrate import calibrate
from .interpreters import Interpreter, describe, label, python_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


@dataclass(frozen=True)
class Experiment:
    name: str
    what: str  # one line for the report
    #: ``python -m experiments run`` arguments, one list per harness invocation
    #: (several for a comparison of server options), keyed by a label.
    harness: dict[str, list[str]] = field(default_factory=dict)
    #: or a module run as ``python -m MODULE ARGS`` writing ``OUTPUT``.
    module: tuple[str, list[str], str] | None = None
    minutes: float = 1.0  # estimate, for the plan


def _harness(conc: str, runtimes: str, workloads: str, *extra: str) -> list[str]:
    return ["--conc", conc, "--runtimes", runtimes, "--workloads", workloads, *extra]


EXPERIMENTS = {e.name: e for e in [
    Experiment(
        "workloads", "every runtime, the four workloads, 1 / 64 / 1,000 connections, 3 rounds",
        harness={"all": _harness("1,64,1000", "threaded,hybrid,asyncio,trio", "hello,cpu,sleep,file",
                                 "--duration", "4", "--warmup", "1", "--fairness", "2", "--repeat", "3")},
        minutes=19),
    Experiment(
        "scale", "hello world at 10,000 and 25,000 connections on every runtime",
        harness={"all": _harness("10000,25000", "threaded,hybrid,asyncio,trio", "hello",
                                 "--duration", "5", "--warmup", "1", "--fairness", "3")},
        minutes=7),
    Experiment(
        "switch-interval", "threaded, hello, 100 connections, sys.setswitchinterval 0.5 / 5 / 50 ms",
        harness={f"{ms}ms": _harness("100", "threaded", "hello", "--duration", "4", "--fairness", "3",
                                     "--repeat", "2", "--server-args", f"--switch-interval {ms / 1000}")
                 for ms in (0.5, 5, 50)},
        minutes=2),
    Experiment(
        "pool-size", "hybrid, sleep (10 ms), 1,000 connections, 30 (default) against 1,000 worker threads",
        harness={f"{n}-workers": _harness("1000", "hybrid", "sleep", "--duration", "4", "--fairness", "3",
                                          "--repeat", "2", "--server-args", f"--max-workers {n}")
                 for n in (30, 1000)},
        minutes=2),
    Experiment(
        "scaling", "every runtime, cpu workload, 1 and 2 server processes (SO_REUSEPORT), 1..256 connections",
        harness={
            "1-process": _harness("1,4,16,64,256", "threaded,hybrid,asyncio,trio", "cpu", "--duration", "4",
                                  "--fairness", "0"),
            # Two processes need both cores, so the load generator shares them: said in the report.
            "2-processes": _harness("1,4,16,64,256", "threaded,hybrid,asyncio,trio", "cpu", "--duration", "4",
                                    "--fairness", "0",
                                    "--server-args", "--workers 2", "--server-cpus", "0,1",
                                    "--client-cpus", "0,1"),
        },
        minutes=5),
    Experiment(
        "db", "TechEmpower fortunes on a throwaway PostgreSQL (pinned to CPU 1) with Jinja2, 64 / 1,000 connections, 3 rounds",
        harness={"all": _harness("64,1000", "threaded,hybrid,asyncio,trio", "db",
                                 "--duration", "4", "--warmup", "1", "--fairness", "2", "--repeat", "3")},
        minutes=4),
    Experiment(
        "slowloris", "slowhttptest (2,000 slow connections: headers, body, read) against each runtime, alone "
                     "(header timeout 10 s, and 60 s for slow headers) and behind nginx (buffering on and off); a "
                     "normal visitor's success and latency, the server's and the kernel's memory",
        module=("experiments.slowloris", ["--seconds", "15", "-o", "{out}"], "slowloris.json"), minutes=14),
    Experiment(
        "micro", "pyperf: switch and creation costs of threads and tasks",
        module=("experiments.micro", ["--fast", "-o", "{out}"], "micro.json"), minutes=3),
    Experiment(
        "memory", "RSS per idle thread (default and 64 KiB stacks) and per idle task, 2,000 of each",
        module=("experiments.idle_memory", ["--count", "2000", "-o", "{out}"], "memory.json"), minutes=1),
]}


def interpreter() -> dict:
    """Which CPython runs the claims: the GIL is the variable the seeds never had."""
    gil_disabled = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
    return {
        "python": sys.version.split()[0], "implementation": platform.python_implementation(),
        "free_threaded_build": gil_disabled, "gil_enabled": enabled,
        "switch_interval_s": sys.getswitchinterval(),
    }


def run_experiment(exp: Experiment, into: Path, quick: bool,
                   interpreters: list[Interpreter] = [Interpreter.STANDARD]) -> None:  # noqa: B006 (never mutated)
    into.mkdir(parents=True, exist_ok=True)
    if exp.module:
        for interpreter in interpreters:  # a micro-benchmark measures the interpreter it runs on
            _run_module(exp.module, into, quick, interpreter)
        return
    for name, args in exp.harness.items():
        out = into / name
        if list(out.glob("experiment-*/runs.jsonl")):
            print(f"  {name}: already measured, kept", flush=True)
            continue
        args = list(args)
        if quick:
            args = _quicken(args)
        if interpreters != [Interpreter.STANDARD]:
            args += ["--interpreters", ",".join(interpreters)]
        command = [sys.executable, "-m", "experiments", "run", *args, "--results-dir", str(out)]
        print(f"  {name}: {' '.join(command[3:])}", flush=True)
        subprocess.run(command, cwd=ROOT, check=True)


def _run_module(spec: tuple[str, list[str], str], into: Path, quick: bool, interpreter: Interpreter) -> None:
    module, args, output = spec
    stem, dot, ext = output.partition(".")
    target = into / (label(stem, interpreter) + dot + ext)
    if target.exists():
        print(f"  {target.name}: already measured, kept", flush=True)
        return
    args = [a.replace("{out}", str(target)) for a in args]
    if quick and module == "experiments.micro":
        args = ["--processes", "1", "--values", "1", "--warmups", "0", "--loops", "200", *args[1:]]
    elif quick and module == "experiments.slowloris":
        args = ["--seconds", "8", "--connections", "100", "--runtimes", "hybrid", "--modes", "headers", *args[2:]]
    elif quick:
        args = ["--count", "200", "--repeat", "1", *args[2:]]
    print(f"  {target.name}: {module} on {interpreter}", flush=True)
    subprocess.run([python_for(interpreter), "-m", module, *args], cwd=ROOT, check=True)


def _quicken(args: list[str]) -> list[str]:
    """Short runs: one round, one second, for smoke tests of the pipeline."""
    quick = dict(zip(args[::2], args[1::2]))
    quick.update({"--duration": "1", "--warmup": "0", "--repeat": "1", "--pause": "0"})
    if quick.get("--fairness", "0") != "0":
        quick["--fairness"] = "1"
    if quick["--conc"] in ("10000,25000",):
        quick["--conc"] = "200"
    return [x for pair in quick.items() for x in pair]


def main(argv: list[str] | None = None) -> int:
    from . import verdicts
    from .claims_report import write_report

    p = argparse.ArgumentParser(prog="python -m experiments.claims", description=__doc__.splitlines()[0])
    p.add_argument("--claim", type=int, action="append", help="a claim number (repeatable; default all)")
    p.add_argument("--quick", action="store_true", help="short runs: checks the pipeline, not the claims")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its estimated duration")
    p.add_argument("--from", dest="source", type=Path, help="judge an earlier claims-* directory again")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--interpreters", default="standard",
                   help="the servers' interpreters, comma-separated: " + ", ".join(Interpreter)
                   + " (each claim is judged on each)")
    args = p.parse_args(argv)
    try:
        interpreters = [Interpreter(n) for n in args.interpreters.split(",") if n]
    except ValueError as exc:
        return p.error(f"{exc}; interpreters: {', '.join(Interpreter)}")
    claims = [verdicts.CLAIMS[n] for n in (args.claim or sorted(verdicts.CLAIMS))
              if n in verdicts.CLAIMS or sys.exit(f"no claim {n}; claims: {sorted(verdicts.CLAIMS)}")]
    needed = [name for name in EXPERIMENTS if any(name in c.experiments for c in claims)]
    print("claims:      " + ", ".join(str(c.number) for c in claims))
    print("experiments: " + ", ".join(f"{n} (~{EXPERIMENTS[n].minutes:g} min)" for n in needed))
    # Each interpreter repeats every experiment (the harness ones in the same interleaved rounds).
    print(f"estimated:   {sum(EXPERIMENTS[n].minutes for n in needed) * len(interpreters):.0f} min"
          + (f" ({len(interpreters)} interpreters)" if len(interpreters) > 1 else "")
          + (" (--quick: much less)" if args.quick else ""))
    if args.dry_run:
        return 0
    run_dir = (args.source or args.results_dir / f"claims-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    args.results_dir = args.results_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    meta_path = run_dir / "claims.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {
        "started": datetime.now().isoformat(timespec="seconds"), "interpreter": interpreter(),
        "quick": args.quick, "machine": platform.platform(), "experiments": {},
        "interpreters": {str(i): describe(i) for i in interpreters},
    }
    # A run judged again (--from) keeps the interpreters it was measured on.
    measured_on = [Interpreter(n) for n in meta.get("interpreters", {"standard": {}})]
    if args.source and args.interpreters != "standard" and measured_on != interpreters:
        print(f"note: {run_dir.name} was measured on {', '.join(measured_on)}: judged on those", flush=True)
    interpreters = measured_on
    if args.source and not args.claim:  # a partial run is judged on the claims it measured, no others
        ran = set(meta.get("experiments", {}))
        claims = [c for c in claims if set(c.experiments) <= ran]
    complete = len(claims) == len(verdicts.CLAIMS)
    if not args.source:
        calibration = meta.setdefault("calibration", {})
        calibration["before"] = calibrate([0, 1], 0.5 if args.quick else 3.0)
        meta_path.write_text(json.dumps(meta, indent=1))
        for name in needed:
            print(f"{name}: {EXPERIMENTS[name].what}", flush=True)
            started = time.monotonic()
            entry = meta["experiments"][name] = {"what": EXPERIMENTS[name].what}
            try:
                run_experiment(EXPERIMENTS[name], run_dir / name, args.quick, interpreters)
            except subprocess.CalledProcessError as exc:  # recorded; the other experiments still run
                entry["error"] = f"{' '.join(map(str, exc.cmd[1:4]))} exited with status {exc.returncode}"
                print(f"  ! {name}: {entry['error']}", flush=True)
            entry["minutes"] = round((time.monotonic() - started) / 60, 1)
            meta_path.write_text(json.dumps(meta, indent=1))
        calibration["after"] = calibrate([0, 1], 0.5 if args.quick else 3.0)
        print(f"calibration (protocol-layer us per request, CPU 0 / 1): before {calibration['before']}, "
              f"after {calibration['after']}", flush=True)
        meta_path.write_text(json.dumps(meta, indent=1))
    results = {i: verdicts.Results(run_dir, i) for i in interpreters}
    judged = {i: [claim.judge(r) for claim in claims] for i, r in results.items()}
    paths = write_report(run_dir, meta, claims, judged, results)
    if not args.quick and not args.claim and complete:  # only a full run replaces the reference report
        args.results_dir.mkdir(parents=True, exist_ok=True)
        (args.results_dir / "REPORT.md").write_text(_rebase(paths[0].read_text(), run_dir, args.results_dir))
        print(f"wrote {args.results_dir / 'REPORT.md'}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _rebase(markdown: str, run_dir: Path, results: Path) -> str:
    """Links in the run's report are relative to it; the copy in results/ needs the run's name."""
    prefix = run_dir.relative_to(results).as_posix() + "/" if run_dir.is_relative_to(results) else str(run_dir) + "/"
    return markdown.replace("](./", f"]({prefix}")


if __name__ == "__main__":
    sys.exit(main())
