"""The claims report: a summary table, then one section per claim; and its plots.

Written by ``make claims`` to ``results/claims-<id>/REPORT.md`` and copied to
``results/REPORT.md``. Every number in it is read from a file of that claims
run (listed under each claim); the plots are drawn from the same files.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ..harness.interpreters import Interpreter
from .claim import Claim
from .gil import changed_verdicts, draw_gil_plot, gil_comparison
from .results import ASYNC, DESIGNS, OURS, SEEDS, Results, Verdict
from .sittings import measured_on, sittings_section

#: judged[interpreter][k][design key]: the verdict of claim k on that design (claims judged once: "seeds" only).
Judged = dict[Interpreter, list[dict[str, Verdict]]]
#: A second run of the same rules, judged: its name and its verdicts (on the interpreters both runs measured).
Second = tuple[str, Judged]

#: Files the pre-registered rules name, moved when experiments/ became subpackages (December 2026). A rule's
#: text cannot follow them without changing its fingerprint, so the report says where they went instead.
MOVED = {"experiments/idle_memory.py": "experiments/benches/idle_memory.py",
         "experiments/micro.py": "experiments/benches/micro.py",
         "experiments/slowloris.py": "experiments/hostile/slowloris.py"}


def _moved_note(rule: str) -> list[str]:
    moved = [f"`{old}` is now `{new}`" for old, new in MOVED.items() if old in rule]
    return [f"(The rule names files as they were when it was registered: {'; '.join(moved)}.)", ""] if moved else []


def _cell(verdicts: dict[str, Verdict], key: str, again: dict[str, Verdict] | None) -> str:
    v = verdicts.get(key) or verdicts.get(SEEDS.key)
    mark = "" if v.rule_state in ("pre-registered", "") else " ⚠"
    return f"**{v.verdict}**{mark}" + (f"<br>{reproduction(v, again, key)}" if again is not None else "")


def reproduction(verdict: Verdict, again: dict[str, Verdict] | None, key: str) -> str:
    """What the second run said of the same verdict: a verdict it did not repeat is not settled."""
    if again is None:
        return "run 2: not measured"
    other = again.get(key) or again.get(SEEDS.key)
    return "run 2: the same" if other.verdict == verdict.verdict else f"run 2: {other.verdict}, so not settled"


def _again(second: Second | None, interpreter: Interpreter, k: int) -> dict[str, Verdict] | None:
    if second is None or interpreter not in second[1]:
        return None
    return second[1][interpreter][k]


def write_report(run_dir: Path, meta: dict, claims: list[Claim], judged: Judged,
                 results: dict[Interpreter, Results], second: Second | None = None) -> list[Path]:
    """REPORT.md: a verdict column per design and interpreter, the rules' provenance, one section per claim."""
    interpreters = list(judged)
    plots = [p for r in results.values() for p in draw_plots(run_dir, r)]
    several = len(interpreters) > 1
    if several:
        plots += draw_gil_plot(run_dir, results)
    lines = (_header(run_dir, meta, interpreters, _reproduced(run_dir, claims, judged, second))
             + _summary_table(claims, judged, second) + _rules_section(meta, claims, judged))
    lines += ["", "Experiments run: " + "; ".join(
        f"{name} ({info.get('minutes', '?')} min: {info['what']}"
        + (f"; {info['note']}" if info.get("note") else "") + (f"; FAILED: {info['error']}" if info.get("error") else "")
        + ")" for name, info in meta.get("experiments", {}).items()), ""]
    lines += sittings_section(run_dir)
    for k, claim in enumerate(claims):
        lines += _claim_section(run_dir, meta, claim, {i: judged[i][k] for i in interpreters}, results,
                                {i: _again(second, i, k) for i in interpreters} if second else None)
    for interpreter, r in results.items():
        if _has_gil(meta, interpreter):
            lines += gil_section(r, plots, f" ({interpreter})" if several else "")
    if several:
        lines += gil_comparison(results, meta, plots, changed_verdicts(claims, judged))
    path = run_dir / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return [path, *plots]


def _summary_table(claims: list[Claim], judged: Judged, second: Second | None) -> list[str]:
    interpreters = list(judged)
    several = len(interpreters) > 1
    columns = [(i, d) for i in interpreters for d in DESIGNS]
    lines = ["", "| # | claim (source) | " + " | ".join(
        f"{'seeds' if d is SEEDS else 'ours'}{f' on {i}' if several else ''}" for i, d in columns) + " | in one line |",
             "| --- | --- | " + "--- | " * len(columns) + "--- |"]
    for k, claim in enumerate(claims):
        line = "<br>".join(f"{'' if not several else f'{i}, '}{d.key if claim.by_design else 'both'}: "
                           f"{judged[i][k][d.key].summary}" for i in interpreters for d in claim.designs())
        lines.append(f"| {claim.number} | {claim.claim} ({claim.source}) | "
                     + " | ".join(_cell(judged[i][k], d.key, _again(second, i, k) if second else None)
                                  for i, d in columns) + f" | {line} |")
    return lines + ["", "Columns: **seeds** judges the seeds' own design, " + SEEDS.title.split("(", 1)[1].rstrip(")")
                    + "; **ours** judges threaded and hybrid (" + OURS.title.split("(", 1)[1].rstrip(")") + "); both "
                    "against the event loops (" + ", ".join(ASYNC) + "). Claims 5 and 7 are properties of threads and "
                    "of the interpreter, judged once. Claims 4, 6 and 10 name the runtimes they measure in their "
                    "headings. ⚠: the rule was not pre-registered for this run (see Rules).", ""]


def _claim_section(run_dir: Path, meta: dict, claim: Claim, verdicts: dict[Interpreter, dict[str, Verdict]],
                   results: dict[Interpreter, Results],
                   again: dict[Interpreter, dict[str, Verdict] | None] | None = None) -> list[str]:
    """One claim: the seeds' words, the question and the commands, the rule, then its verdict on each
    interpreter and design."""
    interpreters = list(verdicts)
    several = len(interpreters) > 1
    measure, judge = claim.commands(run_dir, interpreters)
    title = " / ".join(v[d.key].verdict for v in verdicts.values() for d in claim.designs())
    lines = [f"## Claim {claim.number}: {title}", "", f"> {claim.claim} (seed {claim.source})", "",
             f"**Question.** {claim.question} **Rerun:** `{measure}`; judge again without measuring: `{judge}`.", "",
             "**Rule** (" + verdicts[interpreters[0]][claim.designs()[0].key].rule_note + "):", "",
             *[f"    {line}" for line in claim.rule.splitlines()], "", *_moved_note(claim.rule)]
    if where := measured_on(run_dir, claim.experiments):
        lines += [f"**Measured on** (kernel of each experiment's machine; see How the run was measured): {where}.", ""]
    for interpreter, by_design in verdicts.items():
        for design in claim.designs():
            heading = ([f"on {interpreter} ({_build(meta, interpreter)})"] if several else []) + (
                [claim.design_title(design)] if claim.by_design else [])
            if heading:
                lines += [f"### {', '.join(heading)}", ""]
            lines += _claim_body(run_dir, claim, by_design[design.key], gil=_has_gil(meta, interpreter),
                                 context=claim.read_with(results[interpreter], design))
            if again is not None:
                lines += [f"*Reproduced?* {reproduction(by_design[design.key], again[interpreter], design.key)}.",
                          ""]
    return lines


def _rules_section(meta: dict, claims: list[Claim], judged: Judged) -> list[str]:
    first = next(iter(judged.values()))
    states = {claim.number: first[k][claim.designs()[0].key] for k, claim in enumerate(claims)}
    loud = [f"claim {n}: {v.rule_note}" for n, v in states.items() if v.rule_state not in ("pre-registered",)]
    lines = ["## Rules", "",
             f"Measured at commit `{str(meta.get('git_commit') or '?')[:12]}`, started {meta.get('started', '?')}. "
             "Each claim's rule (the code above `# Presentation` in `experiments/claims/cNN_*.py`, and its RULE text) "
             "was fingerprinted when the run started and again when it was judged; a rule changed since is not "
             "applied to this data (it needs a new run).", ""]
    lines += [f"- **{line}**" for line in loud] or ["- Every rule was committed before this run and is unchanged."]
    return lines + [""]


def _header(run_dir: Path, meta: dict, interpreters: list[Interpreter], reproduced: str) -> list[str]:
    lines = [
        "# Threads or async, in Python: the seeds' claims, measured",
        "",
        f"Generated by `make claims` on {datetime.now():%Y-%m-%d %H:%M} from `{run_dir.name}/`"
        + (" (**--quick: pipeline check, not evidence**)" if meta.get("quick") else "") + ".",
        "Servers' interpreters: " + "; ".join(f"{i}: {_build(meta, i)}" for i in interpreters)
        + f" (switch interval {meta.get('interpreter', {}).get('switch_interval_s', 0.005) * 1000:g} ms where "
        f"there is a GIL). Machine when the run started: {meta.get('machine', '?')} (a run measured in several "
        "sittings may have moved to another machine of the same kind: see How the run was measured); "
        "2 shared cores: servers pinned to CPU 0, load generators to CPU 1 unless a claim says otherwise.",
        f"Thread runtimes: {', '.join(SEEDS.runtimes + OURS.runtimes)}; async runtimes: {', '.join(ASYNC)} "
        "(`async def` handlers where the work can be awaited).",
        "Conditions that differ from the seeds': 2 shared cores (one for the server) instead of a multi-core server, "
        "loopback instead of a network (this kernel has no netem: the 10 ms round trip of curves/hello-rtt10 is "
        "played by the load generator, which holds each request and each answer for half of it), CPython instead "
        "of Rust, load generators wrk "
        "(closed loop) and openload (open loop, ours) instead of the seeds' tools.",
    ]
    lines.append(reproduced)
    calibration = meta.get("calibration") or {}
    if calibration:
        lines.append("Machine speed (`experiments/harness/calibrate.py`, the protocol layer's CPU per request, CPU 0 / CPU 1; "
                     "compare runs by it before comparing their requests/s): " + "; ".join(
                         f"{when} {' / '.join('-' if v is None else f'{v:.1f} us' for v in cpus.values())}"
                         for when, cpus in calibration.items()) + ".")
    return lines


def _reproduced(run_dir: Path, claims: list[Claim], judged: Judged, second: Second | None) -> str:
    """Whether a second run has checked these verdicts: a single run is one measurement, not a settled answer."""
    if second is not None:
        name, again = second
        pairs = [(v, again[i][k].get(key)) for i in judged if i in again for k in range(len(claims))
                 for key, v in judged[i][k].items()]
        same = sum(1 for v, w in pairs if w is not None and v.verdict == w.verdict)
        return (f"Reproducibility: judged again by the same rules on a second full run, `{name}`: {same} of "
                f"{len(pairs)} verdicts the same. Each verdict below says whether run 2 repeated it; one it did not "
                "repeat is not settled: read it as inconclusive (`results/REPRODUCIBILITY.md` compares the two runs "
                "point by point).")
    return ("Reproducibility: not yet checked against a second run (`python -m experiments reproduce FIRST SECOND`, "
            "then `make claims FROM=... SECOND=...`): "
            "read these verdicts as one measurement.")


def _facts(meta: dict, interpreter: Interpreter) -> dict:
    """What the interpreter said of itself; older runs recorded only the harness's own."""
    facts = (meta.get("interpreters") or {}).get(str(interpreter))
    if facts is None:
        old = meta.get("interpreter", {})
        facts = {"version": old.get("python", "?"), "free_threaded_build": old.get("free_threaded_build"),
                 "gil_enabled_after_imports": old.get("gil_enabled", True)}
    return facts


def _has_gil(meta: dict, interpreter: Interpreter) -> bool:
    return _facts(meta, interpreter).get("gil_enabled_after_imports", True) is not False


def _build(meta: dict, interpreter: Interpreter) -> str:
    facts = _facts(meta, interpreter)
    if not facts.get("free_threaded_build"):
        build = "the standard build, with the GIL"
    elif _has_gil(meta, interpreter):
        build = "a free-threaded build with the GIL back on at run time"
    else:
        build = "a free-threaded build, the GIL off"
    return f"CPython {facts.get('version', '?')}, {build}"


def _claim_body(run_dir: Path, claim: Claim, verdict: Verdict, gil: bool, context: list[str]) -> list[str]:
    lines = []
    if verdict.numbers:
        lines += ["**Measured.**", ""] + [f"- {n}" for n in verdict.numbers] + [""]
    lines += [f"**Verdict: {verdict.verdict}.** {verdict.summary}.", ""]
    if context:
        lines += ["**Read it with this** (found in the same run; the rule does not use it):", ""] \
            + [f"- {c}" for c in context] + [""]
    if gil:
        lines += [f"**Why.** {verdict.why}", ""]
    else:  # the explanations are written for the GIL; the comparison section says what changes
        lines += ["**Why.** The explanation written for this claim assumes the GIL; what changes without it, with "
                  "this run's figures, is in [Why the figures move without the GIL]"
                  "(#why-the-figures-move-without-the-gil).", ""]
    for plot in verdict.plots:
        if plot and (run_dir / plot).exists():
            lines += [f"![claim {claim.number}](./{plot})", ""]
    if verdict.sources:
        lines += ["Files: " + ", ".join(f"`{s}`" for s in verdict.sources if s), ""]
    return lines


def gil_section(results: Results, plots: list[Path], which: str = "") -> list[str]:
    """The variable the seeds never had: what the GIL does to thread-per-connection."""
    heading = [f"## The Python question: where the GIL changes the answer{which}", ""]
    lines = []
    rows = []
    for conc in (64, 500):
        r = results.row("workloads", "threaded", "hello", conc)
        h = results.row("workloads", "hybrid", "hello", conc)
        if r and h and r["p99_ms"] is not None and h["p99_ms"] is not None:
            rows.append(f"| {conc:,} | {r['rps']:,.0f} | {r['p99_ms']:.1f} | {_fair(r)} | {r['peak_threads'] or 0:,} "
                        f"| {h['rps']:,.0f} | {h['p99_ms']:.1f} | {_fair(h)} |")
    if rows:
        lines += [
            "Thread per connection against astra's reactor plus pool, hello world (median rounds):", "",
            "| connections | threaded req/s | p99 ms | per-client req/s | threads | hybrid req/s | p99 ms | per-client req/s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "",
            "Every runnable Python thread queues for one lock. With a thread per connection, the more connections, "
            "the more threads wait for each GIL hand-over, and the hand-over order is not first-come "
            "first-served: the per-client spread widens and the accept loop, one thread among many, falls "
            "behind. The hybrid runtime keeps the number of threads near the number of requests actually running.",
            "",
        ]
    switch, tails = [], {}
    for label in ("0.5ms", "5ms", "50ms"):
        r = results.row("switch-interval", "threaded", "hello", 100, label)
        if r and r["p99_ms"] is not None and r["p50_ms"] is not None:
            tails[label] = r["p99_ms"]
            spread = r.get("rps_all") or [r["rps"]]
            switch.append(f"| {label} | {r['rps']:,.0f} ({min(spread):,.0f}..{max(spread):,.0f}) | {r['p50_ms']:.1f} | "
                          f"{r['p99_ms']:.1f} ({_range(r.get('p99_all'))}) | {_fair(r)} | "
                          f"{r.get('ctx_vol') or 0:,} / {r.get('ctx_invol') or 0:,} |")
    if switch:
        lines += [
            "`sys.setswitchinterval` (how long a thread may keep the GIL while others wait), threaded, "
            "hello, 100 connections:", "",
            "| interval | req/s (min..max of the rounds) | p50 ms | p99 ms (min..max) | per-client req/s | "
            "context switches vol / invol |",
            "| --- | --- | --- | --- | --- | --- |", *switch, "",
            _switch_reading(tails),
            "(Context switches are summed over the threads alive when sampled: a connection's thread that has "
            "exited takes its counts with it, so on threaded these figures undercount and are not comparable "
            "across rows.)", "",
        ]
    if any(p.name == results.named("switch-interval.png") for p in plots):
        lines += [f"![switch interval](./{results.named('switch-interval.png')})", ""]
    return heading + lines if lines else []


def _switch_reading(tails: dict[str, float]) -> str:
    """What the measured p99s say about the switch interval (shorter: more, earlier GIL hand-overs)."""
    if "0.5ms" not in tails or "50ms" not in tails:
        return ""
    short, long_ = tails["0.5ms"], tails["50ms"]
    if short > long_ * 1.2:
        return (f"Here a shorter interval made the tail worse (p99 {short:.0f} ms at 0.5 ms against {long_:.0f} ms "
                "at 50 ms): forcing the GIL to change hands more often adds hand-overs, and with them more chances "
                "for a request to wait behind other threads (the per-client column shows whether the order got "
                "any fairer; a difference inside the rounds' ranges is noise).")
    if long_ > short * 1.2:
        return (f"Here a longer interval made the tail worse (p99 {long_:.0f} ms at 50 ms against {short:.0f} ms at "
                "0.5 ms): a thread that keeps the GIL longer makes every other connection wait longer.")
    return (f"The interval barely moved the tail (p99 {short:.0f} ms at 0.5 ms, {long_:.0f} ms at 50 ms): in an "
            "I/O-bound server most hand-overs happen at blocking calls, before the interval expires.")


def _range(values: list | None) -> str:
    return f"{min(values):,.1f}..{max(values):,.1f}" if values else "-"


def _fair(row: dict) -> str:
    lo, hi = row.get("fair_min_rps"), row.get("fair_max_rps")
    return "-" if lo is None else f"{lo:.1f}..{hi:.1f}"


def draw_plots(run_dir: Path, results: Results) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    micro = results.micro()
    if micro:
        names = [n for n in micro if n.startswith("switch-")] + [n for n in micro if n.startswith("create-")]
        fig, ax = plt.subplots(figsize=(8, 4))
        values = [micro[n][0] * 1e6 for n in names]
        errors = [[micro[n][0] * 1e6 - micro[n][1] * 1e6 for n in names],
                  [micro[n][2] * 1e6 - micro[n][0] * 1e6 for n in names]]
        colors = ["tab:red" if "thread" in n else "tab:blue" for n in names]
        ax.barh(names, values, xerr=errors, color=colors)
        ax.set_xscale("log")
        ax.set_xlabel("microseconds (log; bars: median, whiskers: min..max)")
        ax.set_title("Switch and creation cost: threads (red) and tasks (blue)")
        fig.tight_layout()
        written.append(_save(fig, run_dir / results.named("micro.png")))
        plt.close(fig)
    memory = results.json("memory", "memory.json")
    if memory:
        fig, ax = plt.subplots(figsize=(7, 3))
        cases = list(memory)
        rss = [memory[c]["rss_kib_per_unit"] for c in cases]
        kernel = [memory[c]["kernel_stack_kib_per_unit"] or 0 for c in cases]
        ax.barh(cases, rss, label="RSS (user space)", color="tab:green")
        ax.barh(cases, kernel, left=rss, label="kernel stack", color="tab:gray")
        ax.axvline(8, linestyle="--", color="black", label="the seed's ~8 KB")
        ax.set_xlabel("KiB per idle thread or task")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, run_dir / results.named("memory.png")))
        plt.close(fig)
    # Claim 9's curves are drawn by the harness itself (curves-cpu-h1.png in each scaling run).
    pool = [(rt, f"{n} workers", results.row("pool-size", f"{rt}~{n}", "sleep", 1000))
            for rt in ("pinned", "hybrid") for n in (30, 1000)]
    pool = [(rt, label, r) for rt, label, r in pool if r]
    if pool:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
        names = [f"{rt}\n{label}" for rt, label, _ in pool]
        values = [r["rps"] for *_, r in pool]
        low = [v - min(r["rps_all"] or [v]) for v, (*_, r) in zip(values, pool)]
        high = [max(r["rps_all"] or [v]) - v for v, (*_, r) in zip(values, pool)]
        left.bar(names, values, yerr=[low, high], capsize=4, color="tab:green")
        left.set_ylabel("requests/s (whiskers: min..max of rounds)")
        vol = [r.get("ctx_vol") or 0 for *_, r in pool]
        invol = [r.get("ctx_invol") or 0 for *_, r in pool]
        right.bar(names, vol, label="voluntary", color="tab:blue")
        right.bar(names, invol, bottom=vol, label="involuntary", color="tab:red")
        right.set_ylabel("context switches in the run")
        right.legend(fontsize=8)
        for ax in (left, right):
            ax.tick_params(axis="x", labelsize=7)
        fig.suptitle("the seeds' design (pinned) and hybrid, 10 ms blocking handler, 1,000 connections", fontsize=9)
        fig.tight_layout()
        written.append(_save(fig, run_dir / results.named("pool-size.png")))
        plt.close(fig)
    slow_doc = results.json("slowloris", "slowloris.json") or {}
    if slow_doc.get("results"):
        written.append(_slowloris_plot(slow_doc, run_dir / results.named("slowloris.png")))
    switch = [(label, results.row("switch-interval", "threaded", "hello", 100, label)) for label in ("0.5ms", "5ms", "50ms")]
    switch = [(label, r) for label, r in switch if r]
    if switch:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([lbl for lbl, _ in switch], [r["p99_ms"] for _, r in switch], marker="o", label="p99 ms")
        ax.plot([lbl for lbl, _ in switch], [r["p50_ms"] for _, r in switch], marker="o", label="p50 ms")
        ax.set_xlabel("sys.setswitchinterval")
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize=8)
        ax.set_title("threaded, hello, 100 connections", fontsize=9)
        fig.tight_layout()
        written.append(_save(fig, run_dir / results.named("switch-interval.png")))
        plt.close(fig)
    return written


def _slowloris_plot(doc: dict, path: Path) -> Path:
    """One panel per attack; per runtime, the visitor's p99 in each topology (a visitor who got
    nothing is drawn at the probe's 5 s timeout)."""
    import matplotlib.pyplot as plt

    first_timeout = (doc.get("header_timeouts_s") or [10.0])[0]

    def topology(r: dict) -> str:
        if r.get("header_timeout_s", first_timeout) != first_timeout:
            return f"alone, header timeout {r['header_timeout_s']:g} s"
        return "alone" if not r["proxy"] else "nginx" if r.get("buffering", True) else "nginx unbuffered"

    rows = [r for r in doc["results"] if (r.get("probe") or {}).get("success_rate") is not None]
    modes = sorted({r["mode"] for r in rows}, key=["headers", "body", "read"].index)
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    topologies = list(dict.fromkeys(topology(r) for r in rows))
    colors = dict(zip(topologies, ["tab:orange", "tab:gray", "tab:blue", "tab:purple", "tab:green"]))
    fig, axes = plt.subplots(1, len(modes), figsize=(4 * len(modes), 3.6), sharey=True, squeeze=False)
    width = 0.8 / max(1, len(topologies))
    for ax, mode in zip(axes[0], modes):
        for k, topo in enumerate(topologies):
            xs, ys = [], []
            for i, runtime in enumerate(runtimes):
                for r in rows:
                    if r["mode"] == mode and r["runtime"] == runtime and topology(r) == topo:
                        xs.append(i + k * width)
                        ys.append(r["probe"]["p99_ms"] if r["probe"]["success_rate"] else 5000)
            if xs:
                ax.bar(xs, ys, width, color=colors[topo], label=topo)
        ax.set_xticks([i + width * (len(topologies) - 1) / 2 for i in range(len(runtimes))], runtimes, fontsize=7)
        ax.set_yscale("log")
        ax.axhline(1000, color="black", linestyle=":", linewidth=0.8)  # the verdict's "hurt" line
        ax.set_title(f"slow {mode}", fontsize=9)
    axes[0][0].set_ylabel("normal visitor's p99 (ms, log)")
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=colors[t], label=t) for t in topologies], fontsize=7, ncol=len(topologies),
               loc="lower center")
    fig.suptitle(f"{doc['results'][0].get('connections', 1000):,} slow clients; a visitor who got nothing is drawn at 5 s",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out = _save(fig, path)
    plt.close(fig)
    return out


def _save(fig, path: Path) -> Path:
    from matplotlib import rc_context

    fig.savefig(path, dpi=110)
    with rc_context({"svg.hashsalt": "astra"}):  # no date, fixed ids: the same results, the same file
        fig.savefig(path.with_suffix(".svg"), metadata={"Date": None})
    return path
