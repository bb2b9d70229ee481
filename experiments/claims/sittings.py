"""When and on what a claims run was measured: one row per harness experiment, and the operator's account.

Why a report needs this: a long run may be measured in several sittings (stopped
and resumed with ``--resume``), and a resumed run may land on another machine of
the same kind. Figures compare best within one sitting; the table lets a reader
see which experiments share one, and which points were measured again. What no
file records by itself (why a run stopped, what else ran beside it) goes in
``SITTINGS.md`` in the run's directory, written by whoever ran it; the report
quotes it whole.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["measured_on", "sittings_section"]

#: Rows a run set aside (measured while something else competed for the cores) and measured again.
SET_ASIDE = "contaminated.jsonl.txt"
ACCOUNT = "SITTINGS.md"  # the operator's account of the run, quoted whole


def _rows(run_dir: Path) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for env_path in sorted(run_dir.glob("*/*/experiment-*/env.json"),
                           key=lambda path: json.loads(path.read_text()).get("date", "")):
        env = json.loads(env_path.read_text())
        experiment = env_path.parent.parent.relative_to(run_dir).as_posix()
        kernel = env.get("kernel", "").split()
        set_aside = env_path.parent / SET_ASIDE
        again = (f"{sum(1 for line in set_aside.read_text().splitlines() if line.strip())} points measured again "
                 f"(the first attempts are in `{set_aside.relative_to(run_dir).as_posix()}`)"
                 if set_aside.exists() else "")
        rows.append((experiment, _minute(env.get("date")), _minute(env.get("completed")),
                     kernel[2] if len(kernel) > 2 else "?", again))
    return rows


def measured_on(run_dir: Path, experiments: tuple[str, ...]) -> str:
    """Where and when a claim's harness experiments ran, in one line: a verdict whose figures come from
    several sittings should say so next to it."""
    rows = [r for r in _rows(run_dir) if r[0].split("/")[0] in experiments]
    if not rows:
        return ""
    return "; ".join(f"{e} from {s} on {k}" + (f" ({n.split(' (')[0]})" if n else "") for e, s, _, k, n in rows)


def _minute(stamp: str | None) -> str:
    return stamp[:16].replace("T", " ") if stamp else "not completed"


def sittings_section(run_dir: Path) -> list[str]:
    rows = _rows(run_dir)
    account = run_dir / ACCOUNT
    if not rows and not account.exists():
        return []
    kernels = sorted({r[3] for r in rows})
    lines = ["## How the run was measured", "",
             "Each harness experiment's start and end (from its `env.json`) and the kernel it started on. "
             + (f"The run spans {len(kernels)} kernels ({', '.join(kernels)}): machines of the same kind, one "
                "after another; compare figures within one experiment, which is measured in interleaved rounds. "
                if len(kernels) > 1 else "")
             + "The experiments that are not harness runs (slowloris, micro, memory) write their own metadata.", "",
             "| experiment | started | completed | kernel | note |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {e} | {s} | {c} | {k} | {n} |" for e, s, c, k, n in rows]
    if account.exists():
        lines += ["", f"The account of whoever ran it (`{ACCOUNT}`):", "",
                  *[f"> {line}".rstrip() for line in account.read_text().strip().splitlines()]]
    return lines + [""]
