"""``make claims``: run the experiments behind the seeds' claims and write the verdicts.

``python -m experiments.claims [--claim N ...] [--quick] [--dry-run] [--from DIR]``

Each claim (a module of :mod:`experiments.claims`) names the experiments it needs;
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
verdicts side by side (:mod:`experiments.harness.interpreters`).

Each claim's rule is recorded when the run starts and checked when it is
judged (:mod:`.rules`): a full run refuses to start while a needed rule has
uncommitted changes, and a rule changed after the data is not applied to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import sysconfig
import time
from datetime import datetime
from pathlib import Path

from ..harness.calibrate import calibrate
from ..harness.interpreters import Interpreter, describe, label, python_for
from . import rules
from .experiments import EXPERIMENTS, Experiment

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"


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
        started = sorted(out.glob("experiment-*/env.json"))
        if started and "completed" in json.loads(started[-1].read_text()):
            print(f"  {name}: already measured, kept", flush=True)
            continue
        if started:  # interrupted: the harness carries on where it stopped
            command = [sys.executable, "-m", "experiments", "run", "--resume", str(started[-1].parent)]
            print(f"  {name}: resuming {started[-1].parent.name}", flush=True)
            subprocess.run(command + list(args) + _interpreter_args(interpreters), cwd=ROOT, check=True)
            continue
        args = list(args)
        if quick:
            args = _quicken(args)
        args += _interpreter_args(interpreters)
        command = [sys.executable, "-m", "experiments", "run", *args, "--results-dir", str(out)]
        print(f"  {name}: {' '.join(command[3:])}", flush=True)
        subprocess.run(command, cwd=ROOT, check=True)


def _interpreter_args(interpreters: list[Interpreter]) -> list[str]:
    return [] if interpreters == [Interpreter.STANDARD] else ["--interpreters", ",".join(interpreters)]


def _run_module(spec: tuple[str, list[str], str], into: Path, quick: bool, interpreter: Interpreter) -> None:
    module, args, output = spec
    stem, dot, ext = output.partition(".")
    target = into / (label(stem, interpreter) + dot + ext)
    if target.exists():
        print(f"  {target.name}: already measured, kept", flush=True)
        return
    args = [a.replace("{out}", str(target)) for a in args]
    out = ["-o", str(target)]
    if quick and module == "experiments.benches.micro":
        args = ["--processes", "1", "--values", "1", "--warmups", "0", "--loops", "200", "--fast", *out]
    elif quick and module == "experiments.hostile.slowloris":
        args = ["--seconds", "8", "--connections", "100", "--runtimes", "hybrid", "--modes", "headers", *out]
    elif quick:
        args = ["--count", "200", "--repeat", "1", *out]
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
    if "--rates" in quick:  # the two lowest rates: the pipeline, not the curve
        quick["--rates"] = ",".join(quick["--rates"].split(",")[:2])
    quick.pop("--peers", None)
    return [x for pair in quick.items() for x in pair]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.claims", description=__doc__.splitlines()[0])
    p.add_argument("--claim", type=int, action="append", help="a claim number (repeatable; default all)")
    p.add_argument("--quick", action="store_true", help="short runs: checks the pipeline, not the claims")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its estimated duration")
    p.add_argument("--from", dest="source", type=Path, help="judge an earlier claims-* directory again")
    p.add_argument("--resume", type=Path, help="carry on an interrupted claims-* run: measure what it lacks")
    p.add_argument("--second", type=Path, help="with --from: a second run of the same rules; every verdict says "
                   "whether it reproduced there")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--allow-uncommitted-rules", action="store_true",
                   help="measure even though a rule has uncommitted changes (its verdicts are marked so)")
    p.add_argument("--interpreters", default="standard",
                   help="the servers' interpreters, comma-separated: " + ", ".join(Interpreter)
                   + " (each claim is judged on each)")
    return p


def main(argv: list[str] | None = None) -> int:
    from . import CLAIMS

    p = build_parser()
    args = p.parse_args(argv)
    try:
        interpreters = [Interpreter(n) for n in args.interpreters.split(",") if n]
    except ValueError as exc:
        return p.error(f"{exc}; interpreters: {', '.join(Interpreter)}")
    claims = [CLAIMS[n] for n in (args.claim or sorted(CLAIMS))
              if n in CLAIMS or sys.exit(f"no claim {n}; claims: {sorted(CLAIMS)}")]
    _find_earlier_run(p, args)
    needed = [name for name in EXPERIMENTS if any(name in c.experiments for c in claims)]
    print("claims:      " + ", ".join(str(c.number) for c in claims))
    print("experiments: " + ", ".join(f"{n} (~{EXPERIMENTS[n].minutes:g} min)" for n in needed))
    # Each interpreter repeats every experiment (the harness ones in the same interleaved rounds).
    print(f"estimated:   {sum(EXPERIMENTS[n].minutes for n in needed) * len(interpreters):.0f} min"
          + (f" ({len(interpreters)} interpreters)" if len(interpreters) > 1 else "")
          + (" (--quick: much less)" if args.quick else ""))
    if args.dry_run:
        return 0
    run_dir = (args.source or args.resume or args.results_dir / f"claims-{datetime.now():%Y%m%d-%H%M%S}").resolve()
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
    complete = len(claims) == len(CLAIMS)
    if not args.source:
        measure_missing(args, meta, meta_path, run_dir, claims, needed, interpreters)
    write_outputs(args, meta, run_dir, claims, interpreters, complete)
    return 0


def _find_earlier_run(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--from and --resume name an earlier run by its path, or by its name in the results directory; anything
    else is an error (not a new empty run judged as if it were one)."""
    if args.second is not None and args.source is None:
        p.error("--second needs --from: the run it is a second run of")
    for name in ("source", "resume", "second"):
        given = getattr(args, name)
        if given is not None and not (given / "claims.json").exists():
            if not (args.results_dir / given / "claims.json").exists():
                p.error(f"{given} is not a claims run (no claims.json there or in {args.results_dir})")
            setattr(args, name, args.results_dir / given)


def measure_missing(args: argparse.Namespace, meta: dict, meta_path: Path, run_dir: Path, claims: list,
                    needed: list[str], interpreters: list[Interpreter]) -> None:
    """Record the rules (refusing uncommitted or changed ones), then measure each experiment the run lacks."""
    now = rules.record(claims)
    moved = [n for n, r in now.items() if meta.get("rules", {}).get(n, r)["fingerprint"] != r["fingerprint"]]
    if moved:  # resuming: the rules the first half was measured under must still be the rules
        sys.exit(f"the rules of claims {moved} changed since this run started: start a new run")
    meta["rules"] = now | meta.get("rules", {})
    meta.setdefault("git_commit", rules._git("rev-parse", "HEAD"))
    loose = [c.number for c in claims if not meta["rules"][str(c.number)]["committed"]]
    if loose and not (args.quick or args.allow_uncommitted_rules):
        sys.exit(f"the rules of claims {loose} have uncommitted changes: commit them before the run that "
                 "they judge (or --allow-uncommitted-rules, and their verdicts say so)")
    calibration = meta.setdefault("calibration", {})
    if "before" not in calibration:
        calibration["before"] = calibrate([0, 1], 0.5 if args.quick else 3.0)
    meta_path.write_text(json.dumps(meta, indent=1))
    for name in needed:
        done = meta["experiments"].get(name) or {}
        if "minutes" in done and "error" not in done:
            print(f"{name}: measured earlier in this run, kept", flush=True)
            continue
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


def write_outputs(args: argparse.Namespace, meta: dict, run_dir: Path, claims: list,
                  interpreters: list[Interpreter], complete: bool) -> None:
    """Judge every claim, write REPORT.md and LESSONS.md, and, for a full run, the reference copies."""
    from .lessons import write_lessons
    from .report import write_report
    from .results import Results

    results = {i: Results(run_dir, i) for i in interpreters}
    judged = {i: [judge(claim, r, meta.get("rules")) for claim in claims] for i, r in results.items()}
    again = getattr(args, "second", None) or _checked_against(run_dir, args.results_dir)
    second = _judge_second(again, claims, interpreters) if again else None
    paths = write_report(run_dir, meta, claims, judged, results, second)
    paths.append(write_lessons(run_dir, claims, judged, results, second))
    # Only a full, real run replaces the reference report: not --quick now, nor a quick run judged again.
    if not (args.quick or meta.get("quick")) and not args.claim and complete:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        (args.results_dir / "REPORT.md").write_text(_rebase(paths[0].read_text(), run_dir, args.results_dir))
        print(f"wrote {args.results_dir / 'REPORT.md'}")
        if args.results_dir == RESULTS:  # the lessons quote the reference run
            lessons = ROOT / "docs" / "lessons.md"
            prefix = "../" + run_dir.relative_to(ROOT).as_posix() + "/" if run_dir.is_relative_to(ROOT) else f"{run_dir}/"
            lessons.write_text(paths[-1].read_text().replace("](./", f"]({prefix}"))
            print(f"wrote {lessons}")
    print("wrote " + ", ".join(str(p) for p in paths))


def _checked_against(run_dir: Path, results_dir: Path) -> Path | None:
    """The second run that ``results_dir/REPRODUCIBILITY.md`` checked this run against, if it did: judging the
    run again keeps saying which verdicts reproduced."""
    check = results_dir / "REPRODUCIBILITY.md"
    head = check.read_text().partition("\n")[0] if check.exists() else ""
    prefix = f"# Reproducibility: `{run_dir.name}` against `"
    if not head.startswith(prefix):
        return None
    second = results_dir / head[len(prefix):].split("`")[0]
    return second if (second / "claims.json").exists() else None


def _judge_second(second_dir: Path, claims: list, interpreters: list[Interpreter]):
    """The second run judged by the same rules, on the interpreters both runs measured: (its name, verdicts)."""
    from .results import Results, interpreters_of, meta_of

    recorded = meta_of(second_dir).get("rules")
    return second_dir.name, {i: [judge(claim, Results(second_dir, i), recorded) for claim in claims]
                             for i in interpreters if i in interpreters_of(second_dir)}


def judge(claim, results, recorded: dict | None) -> dict:
    """design key -> Verdict for one claim; a stale rule is not applied (its verdict says why)."""
    from .results import PENDING, STALE, Verdict

    state, sentence = rules.status(claim, recorded)
    out = {}
    for design in claim.designs():
        if state == "stale":
            out[design.key] = Verdict(STALE, sentence, why="", rule_state=state, rule_note=sentence)
            continue
        try:
            verdict = claim.judge(results, design)
        except Exception as exc:  # one claim's bug must not cost the report: said loudly in its row
            verdict = Verdict(PENDING, f"the judgement failed: {type(exc).__name__}: {exc}", why="")
        verdict.rule_state, verdict.rule_note = state, sentence
        out[design.key] = verdict
    return out


def _rebase(markdown: str, run_dir: Path, results: Path) -> str:
    """Links in the run's report are relative to it; the copy in results/ needs the run's name."""
    prefix = run_dir.relative_to(results).as_posix() + "/" if run_dir.is_relative_to(results) else str(run_dir) + "/"
    return markdown.replace("](./", f"]({prefix}")


if __name__ == "__main__":
    sys.exit(main())
