"""The claims pipeline: every claim is registered and judged from files a run wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.claims import CLAIMS, PENDING, Results
from experiments.claims.experiments import EXPERIMENTS
from experiments.claims.results import DESIGNS

ROOT = Path(__file__).resolve().parent.parent


def test_every_claim_names_experiments_that_exist():
    assert sorted(CLAIMS) == list(range(1, 11))
    for claim in CLAIMS.values():
        assert all(name in EXPERIMENTS for name in claim.experiments), claim.number


def test_the_plan_is_estimated():
    out = subprocess.run([sys.executable, "-m", "experiments.claims", "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    minutes = int(out.stdout.split("estimated:")[1].split()[0])
    assert 60 < minutes < 600


def test_claims_without_data_say_so(tmp_path):
    results = Results(tmp_path)
    for claim in CLAIMS.values():
        for design in DESIGNS:
            assert claim.judge(results, design).verdict == PENDING, (claim.number, design.key)


def test_every_rule_is_written_out_and_fingerprinted_apart_from_its_presentation(tmp_path):
    from experiments.claims import rules

    for claim in CLAIMS.values():
        text = claim.module.read_text()
        assert "\n" + rules.MARK in text and "RULE = " in rules.rule_text(claim.module), claim.number
        assert "holds" in claim.rule and "does not hold" in claim.rule, claim.number
    # A rule changed after the data is not applied; a changed presentation is.
    claim = CLAIMS[7]
    recorded = {"7": {"fingerprint": rules.fingerprint(claim.module), "committed": True, "commit": "abc",
                      "date": "2026-11-30"}}
    assert rules.status(claim, recorded)[0] == "pre-registered"
    assert rules.status(claim, {"7": recorded["7"] | {"fingerprint": "0" * 16}})[0] == "stale"
    assert rules.status(claim, {"7": recorded["7"] | {"committed": False}})[0] == "uncommitted"
    assert rules.status(claim, None)[0] == "unrecorded"



def test_the_newest_runs_are_still_judged_by_the_rules_in_the_tree():
    """A rule edited by accident (a path rewritten, a threshold nudged) would turn the latest runs' verdicts
    "stale" without anyone deciding it: the run the reference report rests on, and the newest run that
    recorded its rules, must still match the rules here. Changing a rule on purpose means measuring anew."""
    from experiments.claims import rules

    recorded_runs = sorted(d for d in (ROOT / "results").glob("claims-*")
                           if "rules" in json.loads((d / "claims.json").read_text()))
    report = (ROOT / "results" / "REPORT.md").read_text()
    runs = {d for d in (ROOT / "results").glob("claims-*") if f"`{d.name}/`" in report.split("\n\n")[1]}
    runs |= set(recorded_runs[-1:])
    for run in sorted(runs):
        recorded = json.loads((run / "claims.json").read_text()).get("rules")
        for claim in CLAIMS.values():
            state, sentence = rules.status(claim, recorded)
            assert state != "stale", f"claim {claim.number}'s rule changed after {run.name}: {sentence}"

def test_a_stale_rule_is_not_applied(tmp_path):
    from experiments.claims.runner import judge

    recorded = {"8": {"fingerprint": "0" * 16, "committed": True, "commit": "abc", "date": "2026-11-30"}}
    verdicts = judge(CLAIMS[8], Results(tmp_path), recorded)
    assert {v.verdict for v in verdicts.values()} == {"rule newer than the data: not judged"}


@pytest.mark.timeout(300)
def test_claims_judged_per_interpreter_side_by_side(tmp_path):
    """Claim 7 in --quick mode on two interpreters: real measurements, one report with its rule, provenance
    and lessons, and each claim judged on each interpreter.

    The second interpreter is this one again under the free-threaded label (ASTRA_FREETHREADED_PYTHON):
    what is checked is the pipeline (files per interpreter, columns, the comparison section), not the GIL.
    """
    import os

    out = subprocess.run([sys.executable, "-m", "experiments.claims", "--quick", "--claim", "7",
                          "--interpreters", "standard,freethreaded", "--results-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ASTRA_FREETHREADED_PYTHON": sys.executable})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run_dir, = tmp_path.glob("claims-*")
    for name in ("micro/micro.json", "micro/micro+ft.json", "micro.png", "micro+ft.png"):
        assert (run_dir / name).exists(), name
    report = (run_dir / "REPORT.md").read_text()
    assert "## Claim 7:" in report and "## Rules" in report and "Seed figures: 0.2 us" in report
    meta = json.loads((run_dir / "claims.json").read_text())
    assert meta["rules"]["7"]["fingerprint"] and meta["git_commit"]
    assert "## 7. The cost of a switch" in (run_dir / "LESSONS.md").read_text()
    assert not (tmp_path / "REPORT.md").exists()  # partial and quick runs do not replace the reference report
    assert "| seeds on standard | ours on standard | seeds on freethreaded | ours on freethreaded |" in report
    assert report.count("### on standard") == 1 and report.count("### on freethreaded") == 1
    assert "## Without the GIL: the same claims, side by side" in report and PENDING not in report
    # judged again from the files alone, the same interpreters come back; a second run (here: itself) marks
    # every verdict reproduced, in the report and in the lessons
    again = subprocess.run([sys.executable, "-m", "experiments.claims", "--from", str(run_dir), "--claim", "7",
                            "--second", str(run_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    report = (run_dir / "REPORT.md").read_text()
    assert "### on freethreaded" in report
    assert f"second full run, `{run_dir.name}`: 2 of 2 verdicts the same" in report
    assert report.count("run 2: the same") == 6 and "so not settled" not in report  # 4 cells, 2 sections
    assert "Run 2: the same." in (run_dir / "LESSONS.md").read_text()
    lonely = subprocess.run([sys.executable, "-m", "experiments.claims", "--second", str(run_dir)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert lonely.returncode != 0 and "--second needs --from" in lonely.stderr


def test_a_run_compared_with_itself_reproduces_everything():
    """The reproducibility check on the committed reference run against itself: nothing may differ."""
    from experiments.claims.compare import render

    def finished(run: Path) -> bool:  # a run still going (or cut off) has no calibration after it
        meta = run / "claims.json"
        return meta.exists() and "after" in (json.loads(meta.read_text()).get("calibration") or {})

    reference = sorted(p for p in (ROOT / "results").glob("claims-*") if finished(p))
    if not reference:
        pytest.skip("no committed claims run")
    run = reference[-1]
    text = render(run, run)
    interpreters = json.loads((run / "claims.json").read_text()).get("interpreters") or {"standard": {}}
    verdicts = sum(len(c.designs()) for c in CLAIMS.values()) * len(interpreters)
    assert f"## Verdicts: {verdicts} of {verdicts} the same" in text and "Differ: none." in text
    assert PENDING not in text.split("## Machine speed")[0]  # every claim judged, on every interpreter it measured
    if len(interpreters) > 1:
        assert "Micro-benchmarks" in text and "on freethreaded |" in text
    points = int(text.split("## Throughput: ")[1].split()[0])
    assert points > 50 and f"- within 10%: {points} of {points}" in text
    assert "(outside)" not in text and "(differs)" not in text


def test_the_report_says_when_and_on_what_each_experiment_ran(tmp_path):
    from experiments.claims.sittings import ACCOUNT, SET_ASIDE, sittings_section

    for name, date, kernel in (("scale/all", "2026-12-01T03:33:45+00:00", "v1045"),
                               ("workloads/all", "2026-11-30T21:27:45+00:00", "v782")):
        run = tmp_path / name / "experiment-1"
        run.mkdir(parents=True)
        (run / "env.json").write_text(json.dumps({"date": date, "kernel": f"Linux vm 6.18.44-fc-{kernel} #1 x86_64"}))
    (tmp_path / "scale/all/experiment-1" / SET_ASIDE).write_text('{"a": 1}\n{"b": 2}\n')
    (tmp_path / ACCOUNT).write_text("Stopped at 04:51 for make test.")
    text = "\n".join(sittings_section(tmp_path))
    assert text.index("workloads/all") < text.index("scale/all")  # in the order they ran
    assert "2 kernels" in text and "not completed" in text
    assert "2 points measured again" in text and "> Stopped at 04:51 for make test." in text
    assert sittings_section(tmp_path / "nothing-here") == []


def test_claim_4_says_where_its_fixed_rate_exceeds_a_runtimes_capacity():
    """The rule offers 2,000 req/s to every runtime; where curves/hello found a lower capacity, the report
    must say the row cannot tell overload from holding connections (found in run 1, free-threaded build)."""
    from experiments.claims.results import SEEDS
    from experiments.curves import capacity, curve
    from experiments.harness.interpreters import Interpreter

    runs = [p for p in sorted((ROOT / "results").glob("claims-*"))
            if len(json.loads((p / "claims.json").read_text()).get("interpreters") or {}) > 1
            and (p / "curves" / "hello").exists()
            and "after" in (json.loads((p / "claims.json").read_text()).get("calibration") or {})]
    if not runs:
        pytest.skip("no committed two-interpreter claims run with curves")
    for interpreter in (Interpreter.STANDARD_313, Interpreter.FREETHREADED):
        results = Results(runs[-1], interpreter)
        lines = CLAIMS[4].read_with(results, SEEDS)
        rows = results.rows("curves", "hello")
        short = [rt for rt in ("pinned", "pinned~1000", "asyncio", "trio")
                 if curve(rows, rt, "hello") and (capacity(curve(rows, rt, "hello")) or 0) <= 2000]
        assert lines and lines[0].startswith("Capacity on one core, from curves/hello")
        assert ("at or past that capacity" in lines[1]) == bool(short), (interpreter, short, lines)
        assert all(rt in lines[1] for rt in short)


def test_judging_again_needs_an_earlier_run(tmp_path):
    """--from with a path that is no claims run is an error, not an empty new run judged as if it were one."""
    done = subprocess.run([sys.executable, "-m", "experiments.claims", "--from", "claims-nothing-here",
                           "--results-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is not a claims run" in done.stderr
    assert not any(tmp_path.iterdir()) and not (ROOT / "claims-nothing-here").exists()
