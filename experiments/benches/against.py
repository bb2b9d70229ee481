"""Same-run regression comparison against an earlier commit: ``python -m experiments bench --against REF``.

Why: requests/s measured on another day, or just minutes apart on a shared
box, differ by more than the regressions worth catching. So the old astra is
measured in the same run as today's, each old server right after today's in
every round, and the result is today's value over the old one's, round by round.

How: REF is checked out with ``git worktree add --detach`` in a temporary
directory outside this checkout (``materialize``; removed again when the
caller's ExitStack closes, on Ctrl-C and, under ``sigterm_exits``, SIGTERM).
Its servers run on this interpreter and venv, so the dependencies are the
same and only astra's own code differs, with the worktree as their cwd and
first on PYTHONPATH. Being first is not enough: the venv's editable install of
this checkout would still answer for any module the old tree lacks. A
``sitecustomize`` shim, next on PYTHONPATH, removes that finder (and any
sys.path entry for this checkout's root) at start-up; ``probe`` then imports
the old tree in exactly that environment, reads its registry's runtimes and
refuses the tree if any project module came from outside the worktree.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROJECT_PACKAGES = ("astra", "runtimes", "protocols", "experiments")
REGRESSION_TOLERANCE = 0.05  # "hello world ... within 5% of today's"

# Runs in an old tree, with the cwd and environment its servers get: its
# registry's runtimes (and whether each awaits async handlers), and the file of
# every project module it imported, to check that none came from this checkout.
PROBE = """
import json, sys
import astra, experiments.apps, protocols, runtimes
from astra import available_runtimes
registry = sys.modules[available_runtimes.__module__]  # astra.runtimes in old trees, astra.registry later
found = {}
for name in available_runtimes():
    try:
        found[name] = bool(getattr(registry.load_runtime(name), "supports_async", False))
    except Exception as exc:
        found[name] = f"{type(exc).__name__}: {exc}"
files = {name: getattr(mod, "__file__", None) or next(iter(getattr(mod, "__path__", [])), None)
         for name, mod in sorted(sys.modules.items()) if name.split(".")[0] in %r}
print("PROBE " + json.dumps({"runtimes": found, "files": files}))
""" % (PROJECT_PACKAGES,)

# The venv installs this checkout in editable mode: a .pth file appends a
# finder to sys.meta_path, after the path finder. An old tree first on sys.path
# therefore wins for every module it has, but a module it lacks (runtimes.pinned,
# astra.registry) would quietly come from this checkout: a mix of old and new.
# This sitecustomize, on the old tree's PYTHONPATH, drops that finder (and a
# sys.path entry for this checkout's root, as older editable installs add), so
# the old tree imports as if today's were not installed. Only the root: the
# venv's site-packages may well live under it. It would shadow another
# sitecustomize: see isolation_note().
SITECUSTOMIZE = """\"\"\"Written by experiments.benches.hello --against: hide {root} from an old tree.\"\"\"
import os, sys
_ROOT = {root!r}
def _inside(path):
    path = os.path.realpath(str(path))
    return path == _ROOT or path.startswith(_ROOT + os.sep)
def _editable(finder):
    mapping = getattr(sys.modules.get(getattr(finder, "__module__", "")), "MAPPING", None) or {{}}
    return any(_inside(p) for p in mapping.values())
sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
sys.path[:] = [p for p in sys.path if not (p and os.path.realpath(p) == _ROOT)]
"""


def inside(path: Path | str, root: Path) -> bool:
    path, root = Path(path).resolve(), root.resolve()
    return path == root or root in path.parents


def git(*argv: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise RuntimeError(f"git {' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout.strip()


@dataclass
class OldTree:
    """One --against REF: its worktree, and what its registry offers."""
    ref: str
    commit: str
    short: str
    path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    runtimes: dict[str, bool | str] = field(default_factory=dict)  # name -> supports async, or why it fails
    files: dict[str, str] = field(default_factory=dict)

    def server(self, runtime: str) -> str:
        return f"astra-{runtime}@{self.short}"

    def describe(self) -> dict:
        return {"ref": self.ref, "commit": self.commit, "short": self.short, "runtimes": self.runtimes,
                "astra_file": self.files.get("astra")}


def resolve_refs(values: list[str]) -> list[OldTree]:
    """REFs (repeated and/or comma-separated) -> one OldTree per distinct commit, in order."""
    trees: dict[str, OldTree] = {}
    for ref in (r.strip() for value in values for r in value.split(",")):
        if ref:
            try:
                commit = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
            except RuntimeError:
                raise RuntimeError(f"{ref!r} is not a commit of this repository") from None
            trees.setdefault(commit, OldTree(ref, commit, git("rev-parse", "--short", commit)))
    return list(trees.values())


def remove_worktree(path: Path) -> None:
    if not path.exists():
        return  # `git worktree add` never got that far
    out = subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode:
        print(f"! could not remove worktree {path}: {out.stderr.strip()} "
              "(`git worktree prune` clears it once the directory is gone)", file=sys.stderr)


def materialize(tree: OldTree, stack: contextlib.ExitStack) -> None:
    """Check ``tree.commit`` out in a temporary worktree, outside this checkout, undone by ``stack``."""
    tmp = Path(tempfile.mkdtemp(prefix=f"astra-against-{tree.short}-")).resolve()
    stack.callback(shutil.rmtree, tmp, ignore_errors=True)  # registered first: runs after the removal
    if inside(tmp, ROOT):
        raise RuntimeError(f"the temporary directory {tmp} is inside the checkout: set TMPDIR elsewhere")
    tree.path = tmp / "tree"
    stack.callback(remove_worktree, tree.path)  # before the add: a Ctrl-C during it still cleans up
    git("worktree", "add", "--detach", str(tree.path), tree.commit)
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE.format(root=str(ROOT.resolve())))
    # The old tree first (`python -m` also puts the cwd, the old tree, ahead of
    # everything), then the shim; an inherited entry for this checkout is dropped.
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                 if p and Path(p).resolve() != ROOT.resolve()]
    tree.env = {"PYTHONPATH": os.pathsep.join([str(tree.path), str(shim), *inherited])}
    probe(tree)


def probe(tree: OldTree) -> None:
    """Read the old tree's registry in its own environment; refuse a tree that imports from ours."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tree.path, env={**os.environ, **tree.env},
                         capture_output=True, text=True, timeout=120)
    line = next((x for x in out.stdout.splitlines() if x.startswith("PROBE ")), None)
    if line is None:
        raise RuntimeError(f"{tree.ref} ({tree.short}): cannot read its registry: {out.stderr.strip()[-800:]}")
    found = json.loads(line[len("PROBE "):])
    strays = {m: f for m, f in found["files"].items() if f and not inside(f, tree.path)}
    if strays:
        raise RuntimeError(f"{tree.ref} ({tree.short}): modules imported from outside its worktree: {strays}")
    tree.runtimes, tree.files = found["runtimes"], found["files"]
    print(f"--against {tree.ref}: {tree.commit[:12]} checked out in {tree.path} "
          f"(astra from {Path(tree.files['astra']).relative_to(tree.path)}; "
          f"runtimes: {', '.join(tree.runtimes)})")


def isolation_note() -> None:
    """Our sitecustomize shadows the interpreter's own, if it has one: say so."""
    spec = importlib.util.find_spec("sitecustomize")
    if spec is not None:
        print(f"NOTE: {spec.origin} is not run for --against servers (the import-isolation shim replaces it)")


@contextlib.contextmanager
def sigterm_exits():
    """SIGTERM raises SystemExit, so servers stop and worktrees go as on Ctrl-C."""
    def leave(signum, frame):
        raise SystemExit(128 + signum)
    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def old_server(tree: OldTree, runtime: str, handler: str) -> tuple[list[str], dict] | None:
    """argv and spawn options of ``runtime`` as built at ``tree``'s commit, or None if it has none."""
    supports_async = tree.runtimes.get(runtime)
    if supports_async is None:
        print(f"skipping {tree.server(runtime)}: not in that commit's registry")
        return None
    if isinstance(supports_async, str):
        print(f"skipping {tree.server(runtime)}: it does not load there ({supports_async})")
        return None
    app = "experiments.apps:hello_async" if handler == "async" and supports_async else "experiments.apps:hello"
    # The same interpreter, hence the same venv and dependencies; only the tree differs.
    argv = [sys.executable, "-m", "astra", app, "--bind", "127.0.0.1:{port}", "--runtime", runtime]
    return argv, {"cwd": tree.path, "env": tree.env}


def ratio_summary(pairs: list[tuple[dict, dict]], key: str) -> dict | None:
    """Today's ``key`` over the old tree's, round by round: median, min, max."""
    per_round = [(new["round"], new[key] / old[key]) for new, old in pairs if new.get(key) and old.get(key)]
    if not per_round:
        return None
    values = [ratio for _, ratio in per_round]
    return {"ratio": statistics.median(values), "min": min(values), "max": max(values),
            "per_round": {str(k): ratio for k, ratio in per_round}}


def compare_against(runs: list[dict], pairs: list[tuple[str, str, str, OldTree]]) -> list[dict]:
    """Pair each round's run of today's server with the same round's run of the old one.

    ``pairs``: (runtime, today's server, the old server, its tree). Rounds
    interleave the two, so a ratio within a round compares runs seconds
    apart; the spread of those ratios says how far to trust their median.
    """
    found = {(r["server"], r["conns"], r["round"]): r for r in runs}
    conns = sorted({r["conns"] for r in runs})
    rounds = sorted({r["round"] for r in runs})
    comparisons = []
    for (runtime, new, old, tree), c in ((pair, c) for pair in pairs for c in conns):
        matched = [(found[new, c, k], found[old, c, k]) for k in rounds
                   if (new, c, k) in found and (old, c, k) in found]
        rps = ratio_summary(matched, "requests_per_s")
        if rps is None:
            continue  # one side failed in every round
        comparisons.append({
            "runtime": runtime, "server": new, "against": old, "ref": tree.ref, "commit": tree.commit,
            "conns": c, "rounds": len(matched), "requests_per_s": rps,
            "cpu_us_per_request": ratio_summary(matched, "cpu_us_per_request"),
            "target": 1 - REGRESSION_TOLERANCE, "met": rps["ratio"] >= 1 - REGRESSION_TOLERANCE,
        })
    return comparisons


def report_against(comparisons: list[dict]) -> None:
    if not comparisons:
        return
    def cell(summary: dict | None) -> str:
        return "-" if summary is None else f"{summary['ratio']:.3f}x [{summary['min']:.3f}-{summary['max']:.3f}]"
    w = max(len(f"{c['server']} vs {c['against']}") for c in comparisons) + 2
    print(f"\n{'today vs commit':<{w}}{'conns':>6}{'rounds':>7}  {'req/s new/old':<25}{'cpu-us/req new/old':<25}")
    for c in comparisons:
        label = f"{c['server']} vs {c['against']}"
        verdict = f"(target >= {c['target']:g}x: {'met' if c['met'] else 'NOT met'})"
        print(f"{label:<{w}}{c['conns']:>6}{c['rounds']:>7}  {cell(c['requests_per_s']):<25}"
              f"{cell(c['cpu_us_per_request']):<25}{verdict}")
    print("(new/old: today's value over the old commit's; median of the per-round ratios, [min-max] over "
          "the rounds; req/s above 1 is faster today, cpu-us/req below 1 is cheaper today)")
