"""Pre-registration: each claim's rule is fingerprinted and must be committed before the run it judges.

A claim's rule is the part of its module above the line ``# Presentation``
(what is measured, the thresholds, the verdict words; the text and plots
below it may change freely), together with the shared code every verdict
rests on (:func:`shared_text`: the noise and verdict helpers, the median
round, what "sustained" means, the curve helpers). When a claims run starts, the runner records
for every claim the rule's fingerprint (SHA-256 of that part), whether the
module was committed unchanged (``git status``), and the commit and date of
its last change. When the run is judged, each claim's rule is fingerprinted
again; :func:`status` compares:

- ``pre-registered``: same fingerprint, and it was committed before the run;
- ``uncommitted``: same fingerprint, but the module had uncommitted changes
  when the run started (the rule was not fixed before the data);
- ``stale``: the rule changed after the run: the claim is not judged
  (it needs a new run), and the report says so next to it;
- ``unrecorded``: the run predates pre-registration.

A full run refuses to start while a needed rule is uncommitted (``--quick``
runs may, since they judge nothing).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

__all__ = ["MARK", "fingerprint", "record", "status"]

MARK = "# Presentation"
ROOT = Path(__file__).resolve().parents[2]


def rule_text(module: Path) -> str:
    text = module.read_text()
    head, found, _ = text.partition("\n" + MARK)
    return head if found else text


def shared_text() -> str:
    """The code every verdict rests on besides its own module: the noise band and verdict helpers, how rows
    are summarized (the median round), how an open-loop rate counts as sustained, and the curve helpers.
    A change to any of these changes every claim's fingerprint."""
    import inspect

    from .. import curves
    from ..harness import report, run
    from . import results

    pieces = [results.noise, results.band, results.combine, results.best, results.hello_pairs, results.Results,
              report.summarize, report._flatten, run.sustained, curves.curve, curves.capacity, curves.knee]
    return "\n".join(inspect.getsource(piece) for piece in pieces)


def fingerprint(module: Path) -> str:
    return hashlib.sha256((rule_text(module) + shared_text()).encode()).hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def record(claims) -> dict:
    """What the run's metadata keeps of each claim's rule when the run starts."""
    out = {}
    for claim in claims:
        path = claim.module.relative_to(ROOT).as_posix()
        dirty = _git("status", "--porcelain", "--", path)
        last = _git("log", "-1", "--format=%H %cI", "--", path) or ""
        commit, _, date = last.partition(" ")
        out[str(claim.number)] = {"path": path, "fingerprint": fingerprint(claim.module),
                                  "committed": dirty == "" and bool(commit), "commit": commit or None,
                                  "date": date or None}
    return out


def status(claim, recorded: dict | None) -> tuple[str, str]:
    """(state, a sentence for the report) of ``claim``'s rule against what the run recorded."""
    now = fingerprint(claim.module)
    entry = (recorded or {}).get(str(claim.number))
    if entry is None:
        return "unrecorded", "the run predates pre-registration: its rules were not recorded"
    when = f"rule of commit {str(entry['commit'])[:10]} ({entry['date']})" if entry.get("commit") else "rule"
    if entry["fingerprint"] != now:
        return "stale", (f"the rule changed after this run ({entry['fingerprint']} then, {now} now): "
                         "not judged; a new run is needed")
    if not entry.get("committed"):
        return "uncommitted", f"the {when} had uncommitted changes when the run started: not pre-registered"
    return "pre-registered", f"{when}, committed before the run (fingerprint {now})"
