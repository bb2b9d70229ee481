"""The servers ``make bench`` (``experiments.benches.hello``) measures, and which floor is whose.

Names: ``astra-RUNTIME/PARSER`` (``--http1-parser h11`` or ``httptools``);
an old commit's (``--against``) ``astra-RUNTIME/PARSER@SHORT``, or
``astra-RUNTIME@SHORT`` when that commit has only h11; peers by the names in
:data:`PEERS`. Every server answers ``GET /`` with ``200 Hello World!``.

The peers are the servers a user would pick instead, as their users get them,
with two exceptions, both so that the run measures serving rather than a
setting: access logs off where they are on by default (uvicorn), and a listen
backlog of at least 1,000 everywhere (hypercorn's default is 100: 1,000
connections opened at once would wait out SYN retransmits). waitress keeps
its ``connection_limit`` of 100: past 100 open connections it stops
accepting, which is part of what its users get (the report says so at
1,000 connections). granian keeps its defaults: one worker, one runtime
thread, its default blocking threads, its ``--loop auto`` (uvloop when
installed; the metadata records whether it is).

Each astra runtime's own raw floor (:data:`FLOOR_OF`) is the floor with the
same concurrency model, so that the runtime's distance from it is its own
code (protocol, lifecycle, plumbing) and not the model's price:

* threaded -> floor-threads: a thread per connection, blocking reads and writes.
* pinned -> floor-threads: its reactor sees a connection only until its first
  request; from then on a pool worker blocks on it, request after request,
  which is thread per connection in steady state.
* hybrid -> floor-reactor-pool: a selector thread reads and a pool thread
  sends, the hand-off between them being what the design pays so that
  handlers may block. ``floor-selectors`` (the reactor answering on its own
  thread) runs beside it as the least any selector design costs: the gap
  between the two is the price of the hand-off itself.
* asyncio -> floor-asyncio: an ``asyncio.Protocol`` on the standard loop
  (astra's asyncio runtime is run with ``--loop asyncio`` to match: with
  ``auto`` it would pick uvloop whenever uvloop is installed).
* asyncio+uvloop (the asyncio runtime with ``--loop uvloop``, measured when
  uvloop is installed) -> floor-uvloop: the same protocol on uvloop.
* trio -> floor-trio: trio streams.

The handler (``--handler``) is by default each runtime's native hello
world (``async``): ``def`` on the thread runtimes, which cannot await,
``async def`` on the event loops, which await it on the loop as uvicorn
and granian's ASGI mode await their app. (A plain ``def`` there is sent to
a worker thread, a hop per request that is the price of letting it block:
``--handler sync`` measures that.)
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from astra.registry import load_runtime

from .against import OldTree, old_server

PARSERS = ("h11", "httptools")
DEFAULT_PEERS = ("uvicorn-httptools-uvloop", "uvicorn-h11", "granian-wsgi", "granian-asgi", "hypercorn",
                 "waitress", "floor-threads", "floor-selectors", "floor-reactor-pool", "floor-asyncio",
                 "floor-uvloop", "floor-trio")
#: Runtimes measured under a setting of their own: name -> (runtime, extra options, package it needs).
VARIANTS = {"asyncio+uvloop": ("asyncio", ["--loop", "uvloop"], "uvloop")}
PEERS = (*DEFAULT_PEERS, "stdlib", "stdlib-tuned", "hypercorn-trio")
FLOORS = tuple(p for p in PEERS if p.startswith("floor-"))
FLOOR_OF = {"threaded": "floor-threads", "pinned": "floor-threads", "hybrid": "floor-reactor-pool",
            "asyncio": "floor-asyncio", "asyncio+uvloop": "floor-uvloop", "trio": "floor-trio"}
# Versions worth recording: what each peer is, and what it runs on.
PACKAGES = ("h11", "httptools", "uvicorn", "uvloop", "granian", "hypercorn", "waitress", "trio", "anyio")


def variant_available(runtime: str) -> bool:
    """Is what a runtime variant needs installed? (Plain runtimes need nothing more.)"""
    return runtime not in VARIANTS or importlib.util.find_spec(VARIANTS[runtime][2]) is not None


def astra_name(runtime: str, parser: str) -> str:
    return f"astra-{runtime}/{parser}"


def handler_for(runtime: str, kind: str) -> str:
    """The hello handler to serve: ``async def`` where asked for and the runtime can await it."""
    if kind == "async" and load_runtime(VARIANTS.get(runtime, (runtime,))[0]).supports_async:
        return "experiments.apps:hello_async"
    return "experiments.apps:hello"


def astra_argv(runtime: str, parser: str, handler: str) -> list[str]:
    base, extra, _ = VARIANTS.get(runtime, (runtime, [], None))
    if base == "asyncio" and not extra:
        extra = ["--loop", "asyncio"]  # the loop floor-asyncio runs on (see the module's docstring)
    return [sys.executable, "-m", "astra", handler_for(runtime, handler), "--bind", "127.0.0.1:{port}",
            "--runtime", base, "--http1-parser", parser, *extra]


def peer_table() -> dict[str, tuple[tuple[str, ...], list[str]]]:
    """name -> (packages it needs, argv with "{port}"). Python peers run as ``python -m`` with this
    interpreter: the entry points of their scripts, without a PATH lookup."""
    py, bind = sys.executable, "127.0.0.1:{port}"
    asgi, wsgi = "experiments.apps.peers:asgi_hello", "experiments.apps.peers:wsgi_hello"
    uvicorn = [py, "-m", "uvicorn", asgi, "--host", "127.0.0.1", "--port", "{port}",
               "--no-access-log", "--log-level", "warning"]
    granian = [py, "-m", "granian", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]
    hypercorn = [py, "-m", "hypercorn", asgi, "-b", bind, "--backlog", "4096"]
    return {
        "uvicorn-httptools-uvloop": (("uvicorn", "httptools", "uvloop"),
                                     [*uvicorn, "--http", "httptools", "--loop", "uvloop"]),
        "uvicorn-h11": (("uvicorn",), [*uvicorn, "--http", "h11", "--loop", "asyncio"]),
        "granian-wsgi": (("granian",), [*granian, "--interface", "wsgi", wsgi]),
        "granian-asgi": (("granian",), [*granian, "--interface", "asgi", asgi]),
        # asyncio (or trio) worker, h11 for HTTP/1.1; hypercorn logs no requests unless asked.
        "hypercorn": (("hypercorn",), [*hypercorn, "-k", "asyncio"]),
        "hypercorn-trio": (("hypercorn",), [*hypercorn, "-k", "trio"]),
        "waitress": (("waitress",), [py, "-m", "waitress", f"--listen={bind}", wsgi]),
        **{name: (("uvloop",) if name == "floor-uvloop" else (), [py, "-m", "experiments.apps.peers", name, "{port}"])
           for name in ("stdlib", "stdlib-tuned", *FLOORS)},
    }


def cli_help(tree: OldTree) -> str:
    """An old commit's ``python -m astra --help``: which of today's options it has."""
    out = subprocess.run([sys.executable, "-m", "astra", "--help"], cwd=tree.path,
                         env={**os.environ, **tree.env}, capture_output=True, text=True, timeout=60)
    return out.stdout


def old_servers(tree: OldTree, runtime: str, parsers: list[str], handler: str,
                options: str) -> list[tuple[str, str, list[str], dict]]:
    """(today's name, old name, argv, spawn) for ``runtime`` as built at ``tree``'s commit.

    ``options``: its CLI's help. A commit without ``--http1-parser`` has h11
    only: it runs as it is, paired with today's h11 server, and only when h11
    is measured. Its asyncio runtime gets ``--loop asyncio`` as today's does
    (every commit whose asyncio runtime can pick uvloop has the option).
    """
    built = old_server(tree, runtime, handler)
    if built is None:
        return []
    argv, spawn = built
    if runtime == "asyncio" and "--loop" in options:
        argv = [*argv, "--loop", "asyncio"]
    if "--http1-parser" not in options:
        return [(astra_name(runtime, "h11"), tree.server(runtime), argv, spawn)] if "h11" in parsers else []
    return [(astra_name(runtime, parser), f"{astra_name(runtime, parser)}@{tree.short}",
             [*argv, "--http1-parser", parser], spawn) for parser in parsers]


def choose_servers(runtimes: list[str], parsers: list[str], peers: list[str], handler: str,
                   trees: list[OldTree]) -> tuple[dict[str, tuple[list[str], dict]], list[tuple]]:
    """(name -> (argv, spawn options), in round order; pairs for --against).

    Each old astra comes right after today's same runtime, so a pair shares
    its minute of the machine. A pair is (runtime, today's name, old name, tree).
    """
    servers: dict[str, tuple[list[str], dict]] = {}
    pairs: list[tuple] = []
    options = {tree.commit: cli_help(tree) for tree in trees}
    for runtime in runtimes:
        olds = [(tree, *old) for tree in trees
                for old in old_servers(tree, runtime, parsers, handler, options[tree.commit])]
        for parser in parsers:
            today = astra_name(runtime, parser)
            servers[today] = (astra_argv(runtime, parser, handler), {})
            for tree, new, old, argv, spawn in olds:
                if new == today:
                    servers[old] = (argv, spawn)
                    pairs.append((runtime, new, old, tree))
    table = peer_table()
    for name in peers:
        packages, argv = table[name]
        if missing := [p for p in packages if importlib.util.find_spec(p) is None]:
            print(f"skipping {name}: {', '.join(missing)} not installed (pip install -e '.[experiments]')")
            continue
        servers[name] = (argv, {})
    return servers, pairs
