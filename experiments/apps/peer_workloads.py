"""The harness's workloads for the peer servers: hypercorn, uvicorn, waitress, stdlib.

The peers are optional reference rows, run through the same workloads as
astra (``experiments.harness.workloads``). Each workload here answers with the same
status, body and content type as its astra handler in ``experiments.apps``:

* ``asgi_app``: for hypercorn and uvicorn (both on asyncio here). It awaits
  where the work can be awaited: ``sleep`` awaits ``asyncio.sleep``, ``file``
  reads on a thread (``asyncio.to_thread``); ``hello`` and ``cpu`` have
  nothing to await and run inline on the loop.
* ``wsgi_app``: for waitress; the blocking forms.
* ``WorkloadHandler``: the standard library's ``BaseHTTPRequestHandler``,
  served by ``python -m experiments.apps.peers stdlib-workload HOST PORT``.

Which workload a process serves is read once, at import, from the environment
variable ``ASTRA_WORKLOAD`` (hello, cpu, sleep, file; ``hello`` when unset).
``ASTRA_SLEEP_MS`` and ``ASTRA_INDEX_HTML`` are read by ``experiments.apps``,
whose constants are reused here. ``make_asgi_app`` / ``make_wsgi_app`` build
the app for any workload by name (the tests use them in-process).

Every response carries a ``Content-Length``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from .peers import HelloHandler, answer_lifespan

from .. import apps  # the handlers, in experiments/apps/__init__.py

__all__ = [
    "H2_PEERS", "PEERS", "WORKLOAD", "asgi_app", "wsgi_app", "WorkloadHandler", "make_asgi_app", "make_wsgi_app",
    "peer_argv", "peer_available",
]

TEXT = "text/plain; charset=utf-8"  # what astra sends for a str body

# hello's body, taken from astra's own handler so the two cannot drift apart.
HELLO = apps.hello(None).body.data


def cpu_body() -> bytes:
    """The cpu workload's work, per request: 100 string formats, then JSON of an address.

    ``experiments.apps.cpu`` does the same inside a handler that returns an
    astra ``Response``; this is the bare computation (the tests check the
    bodies are byte-for-byte equal).
    """
    city = "X"
    for n in range(100):
        city = f"Value: {n}"
    return json.dumps({"street": "10 Downing Street", "city": city}).encode()


def _hello() -> bytes:
    return HELLO


async def _hello_async() -> bytes:
    return HELLO


async def _cpu_async() -> bytes:
    return cpu_body()  # nothing to await: computed on the loop


def _sleep() -> bytes:
    time.sleep(apps.SLEEP_SECONDS)
    return b"Slept"


async def _sleep_async() -> bytes:
    await asyncio.sleep(apps.SLEEP_SECONDS)
    return b"Slept"


def _file() -> bytes:
    return apps.INDEX_HTML.read_text().encode()  # read_text then utf-8, as astra's Response does


async def _file_async() -> bytes:
    return await asyncio.to_thread(_file)


@dataclass(frozen=True)
class _Form:
    content_type: str
    blocking: Callable[[], bytes]
    awaitable: Callable[[], Awaitable[bytes]]


FORMS = {
    "hello": _Form(TEXT, _hello, _hello_async),
    "cpu": _Form("application/json", cpu_body, _cpu_async),
    "sleep": _Form(TEXT, _sleep, _sleep_async),
    "file": _Form("text/html", _file, _file_async),
}


def _form(workload: str) -> _Form:
    try:
        return FORMS[workload]
    except KeyError:
        raise ValueError(f"unknown workload {workload!r} (ASTRA_WORKLOAD); known: {', '.join(FORMS)}") from None


# ASGI ---------------------------------------------------------------------------------

def make_asgi_app(workload: str):
    """The ASGI 3 app serving ``workload`` on every path and method."""
    form = _form(workload)
    content_type = form.content_type.encode()
    produce = form.awaitable

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        if scope["type"] != "http":
            raise RuntimeError(f"unsupported ASGI scope {scope['type']!r}")
        body = await produce()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    app.__qualname__ = app.__name__ = f"asgi_{workload}"
    return app


# WSGI ---------------------------------------------------------------------------------

def make_wsgi_app(workload: str):
    """The WSGI app serving ``workload`` (its blocking form) on every path and method."""
    form = _form(workload)
    content_type = form.content_type
    produce = form.blocking

    def app(environ, start_response):
        body = produce()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    app.__qualname__ = app.__name__ = f"wsgi_{workload}"
    return app


# The standard library -----------------------------------------------------------------

class WorkloadHandler(HelloHandler):
    """``BaseHTTPRequestHandler`` serving ``WORKLOAD``, as its users meet it.

    HTTP/1.1 with keep-alive; otherwise stock: the head and the body go out in
    two writes and Nagle's algorithm is left on (see
    ``experiments.apps.peers.HelloHandler`` for what that costs a keep-alive client).
    """

    def payload(self) -> tuple[str, bytes]:
        return WORKLOAD_FORM.content_type, WORKLOAD_FORM.blocking()


WORKLOAD = os.environ.get("ASTRA_WORKLOAD", "hello")
WORKLOAD_FORM = _form(WORKLOAD)
asgi_app = make_asgi_app(WORKLOAD)
wsgi_app = make_wsgi_app(WORKLOAD)


# Command lines --------------------------------------------------------------------------

PEERS = ("hypercorn", "uvicorn", "uvicorn-fast", "waitress", "gunicorn", "granian-wsgi", "granian-asgi", "stdlib")
#: The peers that also speak h2c with prior knowledge (the same command line serves both).
H2_PEERS = ("hypercorn", "gunicorn", "granian-wsgi", "granian-asgi")

_PACKAGES = {"hypercorn": "hypercorn", "uvicorn": "uvicorn", "uvicorn-fast": "uvicorn", "waitress": "waitress",
             "gunicorn": "gunicorn", "granian-wsgi": "granian", "granian-asgi": "granian", "stdlib": None}


def peer_argv(peer: str, host_placeholder: str = "{host}", port_placeholder: str = "{port}") -> list[str]:
    """The command line serving the current workload on ``peer``.

    ``host_placeholder`` and ``port_placeholder`` appear literally in the
    result, for the harness to fill in. The workload is chosen by
    ``ASTRA_WORKLOAD`` in the server's environment (and ``ASTRA_SLEEP_MS``,
    ``ASTRA_INDEX_HTML`` as for astra); run it with the repository root as
    the working directory, so ``experiments`` is importable.

    Each server runs with its own defaults, access logs off:

    * hypercorn: one asyncio worker (``-k asyncio``, its default), h11 for
      HTTP/1.1; its access log is off unless asked for.
    * uvicorn: ``--http h11 --loop asyncio``, ``--no-access-log --log-level warning``.
    * waitress: its defaults, which are part of what its users get: 4 threads
      and ``connection_limit=100`` (past 100 open connections it stops
      accepting until one closes), ``backlog=1024``. It logs no requests.
    * uvicorn-fast: the same on httptools and uvloop, uvicorn's fast path.
    * gunicorn: the WSGI app on one process with 8 threads (``-k gthread
      --threads 8``), backlog 4096, HTTP/2 by prior knowledge or Upgrade.
    * granian-wsgi, granian-asgi: one worker, its defaults otherwise (it
      speaks h2c with prior knowledge on the same port).
    * stdlib: ``ThreadingHTTPServer`` with ``WorkloadHandler``, stock (Nagle
      on, the listen backlog of 5), keep-alive on.
    """
    py, bind = sys.executable, f"{host_placeholder}:{port_placeholder}"
    if peer == "hypercorn":
        return [py, "-m", "hypercorn", "-k", "asyncio", "-b", bind, "experiments.apps.peer_workloads:asgi_app"]
    if peer == "uvicorn":
        return [py, "-m", "uvicorn", "--host", host_placeholder, "--port", port_placeholder,
                "--http", "h11", "--loop", "asyncio", "--no-access-log", "--log-level", "warning",
                "experiments.apps.peer_workloads:asgi_app"]
    if peer == "uvicorn-fast":
        return [py, "-m", "uvicorn", "--host", host_placeholder, "--port", port_placeholder,
                "--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
                "experiments.apps.peer_workloads:asgi_app"]
    if peer == "gunicorn":
        return [py, "-m", "gunicorn", "-k", "gthread", "--threads", "8", "-w", "1", "-b", bind,
                "--backlog", "4096", "--log-level", "warning", "--http-protocols", "h2,h1",
                "--http2-cleartext", "both", "experiments.apps.peer_workloads:wsgi_app"]
    if peer in ("granian-wsgi", "granian-asgi"):
        interface = peer.split("-")[1]
        return [py, "-m", "granian", "--host", host_placeholder, "--port", port_placeholder, "--workers", "1",
                "--interface", interface, "--log-level", "warning", f"experiments.apps.peer_workloads:{interface}_app"]
    if peer == "waitress":
        return [py, "-m", "waitress", f"--listen={bind}", "experiments.apps.peer_workloads:wsgi_app"]
    if peer == "stdlib":
        return [py, "-m", "experiments.apps.peers", "stdlib-workload", host_placeholder, port_placeholder]
    raise ValueError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")


def peer_available(peer: str) -> bool:
    """Whether ``peer``'s package can be imported by this interpreter (stdlib: always)."""
    if peer not in _PACKAGES:
        raise ValueError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
    package = _PACKAGES[peer]
    return package is None or importlib.util.find_spec(package) is not None
