#!/bin/sh
# A virtual environment on the free-threaded interpreter (.ci/build-freethreaded.sh builds it),
# with astra's test and experiment dependencies (the suite runs the harness too). A package that neither has a free-threaded wheel nor
# builds from source is left out, by name, and the tests that need it skip.
# Usage: freethreaded-venv.sh PYTHON VENV
set -e
PY=$1; VENV=$2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e . >/dev/null
# The test and experiments extras, one requirement at a time (read from pyproject.toml, not repeated here).
reqs=$("$VENV/bin/python" - <<'PYCODE'
import tomllib
with open("pyproject.toml", "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
    print("\n".join(extras["test"] + extras["experiments"]))
PYCODE
)
left_out=""
for req in $reqs psutil; do
  # Wheels first (an older release may have a free-threaded wheel where the newest has only a
  # source that needs Rust crates this machine cannot fetch), then a build from source.
  "$VENV/bin/python" -m pip install -q --only-binary=:all: "$req" >/dev/null 2>&1 ||
    "$VENV/bin/python" -m pip install -q "$req" >/dev/null 2>&1 ||
    # psycopg[binary] has no free-threaded wheel; plain psycopg is pure Python over the
    # system's libpq (Debian's libpq5, which PostgreSQL brings), and keeps the GIL off.
    { [ "$req" != "${req%%\[binary\]*}" ] &&
      "$VENV/bin/python" -m pip install -q "${req%%\[binary\]*}${req#*\[binary\]}" >/dev/null 2>&1; } ||
    left_out="$left_out $req"
done
[ -z "$left_out" ] || echo "left out on the free-threaded build (no wheel, and no build from source here):$left_out"
"$VENV/bin/python" -c 'import sys; print("free-threaded:", not sys._is_gil_enabled(), sys.version.split()[0])'
