"""hello_bench --against: an old commit's astra, from a worktree, measured in the same run.

No mocks: real worktrees of HEAD, real servers, real wrk. HEAD stands in for
"the commit before the change": whatever it holds, it is a tree other than
the working one, and the checks are about where code is imported from.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from experiments.benches import hello as hello_bench
from experiments.harness.servers import ServerProcess

ROOT = Path(__file__).resolve().parent.parent

# Served from the old tree: says which files the running server's modules came from.
WHEREAMI = '''
import sys
from astra import Response

def app(request):
    return Response("\\n".join(sys.modules[m].__file__ for m in ("astra", "protocols", "runtimes.threaded")))
'''


def worktrees() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout


def in_tree(tree: hello_bench.OldTree, code: str) -> subprocess.CompletedProcess:
    """Run ``python -c code`` exactly as the bench runs the old tree's servers: same cwd, same env."""
    return subprocess.run([sys.executable, "-c", code], cwd=tree.path, env={**os.environ, **tree.env},
                          capture_output=True, text=True, timeout=30)


def test_an_old_tree_imports_only_from_its_worktree():
    with contextlib.ExitStack() as stack:
        tree, = hello_bench.resolve_refs(["HEAD"])
        hello_bench.materialize(tree, stack)
        path = tree.path
        assert not hello_bench.inside(path, ROOT) and str(path) in worktrees()
        assert tree.runtimes and "threaded" in tree.runtimes  # read from the old registry, whatever its module

        out = in_tree(tree, "import astra, sys; print(astra.__file__)")
        assert out.returncode == 0, out.stderr
        assert Path(out.stdout.strip()) == path / "astra" / "__init__.py"

        # A module the old tree lacks must not be answered by the venv's editable
        # install of this checkout (whose finder looks up children of astra,
        # runtimes, ... in this checkout): it must simply be missing.
        assert (ROOT / "runtimes" / "threaded.py").exists()
        (path / "runtimes" / "threaded.py").unlink()
        out = in_tree(tree, "import runtimes.threaded")
        assert "ModuleNotFoundError" in out.stderr, out.stdout + out.stderr
        subprocess.run(["git", "-C", str(path), "checkout", "--", "runtimes/threaded.py"], check=True)

        # The server the bench starts for the old tree runs the old tree's code.
        (path / "whereami.py").write_text(WHEREAMI)
        argv, spawn = hello_bench.old_server(tree, "threaded", "sync")
        argv = [("whereami:app" if arg == "experiments.apps:hello" else arg) for arg in argv]
        with tempfile.TemporaryFile("w+") as log:
            server = ServerProcess(argv, cpus=None, log=log, **spawn)
            try:
                server.wait_ready(timeout=20)
                conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
                conn.request("GET", "/")
                files = conn.getresponse().read().decode().splitlines()
                conn.close()
            finally:
                server.stop()
        assert len(files) == 3 and all(hello_bench.inside(f, path) for f in files), files
    # The ExitStack's exit removes the worktree, its registration and the temporary directory.
    assert not path.exists() and not path.parent.exists()
    assert str(path) not in worktrees()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_against_head_end_to_end(tmp_path):
    short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run(
        [sys.executable, "-m", "experiments.benches.hello", "--conns", "1", "--duration", "1", "--warmup", "1",
         "--pause", "0.2", "--repeat", "1", "--runtimes", "threaded", "--parsers", "h11", "--peers", "",
         "--against", "HEAD", "--results-dir", str(tmp_path)],  # not results/: its -latest.json is tracked
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    document = json.loads((tmp_path / "hello_bench-latest.json").read_text())
    # HEAD has --http1-parser, so its server is named for the parser, as today's is.
    old = f"astra-threaded/h11@{short}"
    assert [r["server"] for r in document["results"]] == ["astra-threaded/h11", old]
    assert all(r["requests"] > 0 for r in document["results"])
    entry, = document["against"]
    assert (entry["server"], entry["against"], entry["conns"], entry["rounds"]) == ("astra-threaded/h11", old, 1, 1)
    assert entry["requests_per_s"]["ratio"] > 0 and entry["cpu_us_per_request"]["ratio"] > 0
    assert entry["requests_per_s"]["min"] <= entry["requests_per_s"]["ratio"] <= entry["requests_per_s"]["max"]
    tree, = document["metadata"]["against_trees"]
    assert not hello_bench.inside(tree["astra_file"], ROOT)
    assert f"{old} " in out.stdout and "new/old" in out.stdout
    assert "astra-against-" not in worktrees()
