"""The interpreter a server under test runs on: a condition of every experiment, like its runtime.

``standard`` is the interpreter running the harness. ``freethreaded`` is
CPython 3.13 built without the GIL (PEP 703): ``make freethreaded`` builds it
and a virtualenv on it (``.venv-ft``), or ``ASTRA_FREETHREADED_PYTHON``
names another one. The harness itself stays on the standard build; only the
servers move.

A run's label carries the interpreter, so every table, plot and resume key
tells the two apart without another column: ``threaded`` and
``threaded+ft``. An extension module that does not declare itself safe
without the GIL switches it back on for the whole process when imported,
and the condition would silently be the standard one again. The releases
installed here (httptools 0.9, uvloop 0.23, psutil) declare it; the GIL is
not forced off (``PYTHON_GIL=0`` would run an undeclared module unsafely).
Instead :func:`describe` imports what a server imports and records whether
the GIL is still off, in env.json, and the harness says loudly when it is not.
"""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["Interpreter", "label", "split_label", "python_for", "env_for", "describe"]

ROOT = Path(__file__).resolve().parents[2]


class Interpreter(enum.StrEnum):
    STANDARD = "standard"
    FREETHREADED = "freethreaded"
    #: CPython 3.13 with the GIL: the free-threaded build's own version, so that a comparison
    #: with it isolates the GIL from everything else 3.13 changed since the harness's Python.
    STANDARD_313 = "standard-3.13"


#: What a label adds for each interpreter.
_SUFFIX = {Interpreter.STANDARD: "", Interpreter.FREETHREADED: "+ft", Interpreter.STANDARD_313: "+313"}
#: Where each interpreter other than the harness's own is found: (environment variable, default venv).
_WHERE = {Interpreter.FREETHREADED: ("ASTRA_FREETHREADED_PYTHON", ".venv-ft", "make freethreaded"),
          Interpreter.STANDARD_313: ("ASTRA_STANDARD313_PYTHON", ".venv-313", "make standard-3.13")}


def label(runtime: str, interpreter: Interpreter) -> str:
    """``threaded``, ``threaded+ft``."""
    return runtime + _SUFFIX[interpreter]


def split_label(text: str) -> tuple[str, Interpreter]:
    """``threaded+ft`` -> (``threaded``, FREETHREADED); anything else is on the standard build."""
    for interpreter, suffix in _SUFFIX.items():
        if suffix and text.endswith(suffix):
            return text[: -len(suffix)], interpreter
    return text, Interpreter.STANDARD


def python_for(interpreter: Interpreter) -> str:
    """The executable that runs servers on ``interpreter``; a clear error when it is not built."""
    if interpreter is Interpreter.STANDARD:
        return sys.executable
    variable, venv, make = _WHERE[interpreter]
    path = os.environ.get(variable) or str(ROOT / venv / "bin" / "python")
    if not os.access(path, os.X_OK):
        raise SystemExit(f"no {interpreter} interpreter at {path}: run `{make}` (or set {variable})")
    return path


def env_for(interpreter: Interpreter) -> dict[str, str]:
    """Environment for a server on ``interpreter``: nothing forced (see the module's docstring)."""
    return {}


# Imports what a server imports (each runtime, the C parser and uvloop where installed) before it
# asks: an extension module that does not declare itself safe without the GIL turns it back on.
_PROBE = ("import importlib, json, sys, sysconfig\n"
          "for name in ('astra', 'runtimes.threaded', 'runtimes.pinned', 'runtimes.hybrid',\n"
          "             'runtimes.asyncio_runtime', 'runtimes.trio_runtime', 'httptools', 'uvloop'):\n"
          "    try: importlib.import_module(name)\n"
          "    except ImportError: pass\n"
          "print(json.dumps({'version': sys.version.split()[0], 'executable': sys.executable,\n"
          "  'free_threaded_build': bool(sysconfig.get_config_var('Py_GIL_DISABLED')),\n"
          "  'gil_enabled_after_imports': getattr(sys, '_is_gil_enabled', lambda: True)()}))")


def describe(interpreter: Interpreter) -> dict:
    """What the interpreter says of itself, with the server's environment (for env.json)."""
    python = python_for(interpreter)
    out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, **env_for(interpreter)})
    if out.returncode:
        return {"executable": python, "error": out.stderr.strip()[-300:]}
    facts = json.loads(out.stdout)
    if interpreter is Interpreter.FREETHREADED and facts["gil_enabled_after_imports"]:
        print(f"WARNING: on {python} the GIL is back on once astra's modules are imported (an extension "
              "module without free-threading support): the +ft rows are NOT without the GIL", file=sys.stderr)
    return facts
