"""The interpreter as a condition of the harness: labels, the executable, the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from experiments.harness.interpreters import Interpreter, describe, env_for, label, python_for, split_label

from .test_peer_apps import ROOT


def test_labels_carry_the_interpreter_and_read_back():
    for runtime in ("threaded", "hybrid", "asyncio"):
        for interpreter in Interpreter:
            assert split_label(label(runtime, interpreter)) == (runtime, interpreter)
    assert label("trio", Interpreter.STANDARD) == "trio"
    assert split_label("peer:gunicorn") == ("peer:gunicorn", Interpreter.STANDARD)


def test_nothing_is_forced_and_a_missing_build_is_named(monkeypatch, tmp_path):
    assert env_for(Interpreter.FREETHREADED) == {} and env_for(Interpreter.STANDARD) == {}
    monkeypatch.setenv("ASTRA_FREETHREADED_PYTHON", str(tmp_path / "nope"))
    with pytest.raises(SystemExit, match="make freethreaded"):
        python_for(Interpreter.FREETHREADED)
    assert python_for(Interpreter.STANDARD) == sys.executable


def test_describe_reports_what_the_interpreter_says(monkeypatch):
    facts = describe(Interpreter.STANDARD)
    assert facts["version"] == sys.version.split()[0] and facts["gil_enabled_after_imports"] in (True, False)


def test_a_plan_on_both_interpreters_labels_each_runtime_twice(monkeypatch):
    # The standard interpreter stands in for the free-threaded one: only the plan is checked.
    out = subprocess.run([sys.executable, "-m", "experiments", "run", "--dry-run", "--conc", "64",
                          "--runtimes", "threaded,trio", "--interpreters", "standard,freethreaded",
                          "--workloads", "hello"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**__import__("os").environ, "ASTRA_FREETHREADED_PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    assert "threaded+ft" in out.stdout and "trio+ft" in out.stdout
