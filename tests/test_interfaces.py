"""``--interface``: telling an astra handler, a WSGI and an ASGI application apart, and serving each.

The detection is checked on the real frameworks' application objects, and
the CLI end to end: a Flask and a Starlette application named without
``--interface``, each served and each announced as what it was taken for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from astra import ASGIHandler, WSGIAdapter
from astra.interfaces import Interface, adapt, detect

from . import asgi_apps, wsgi_apps

ROOT = Path(__file__).resolve().parent.parent


def astra_handler(request):
    return None


async def astra_async_handler(request):
    return None


def wsgi_function(environ, start_response):
    return []


class WSGIObject:
    def __call__(self, environ, start_response, extra=None):
        return []


class ASGIObject:
    async def __call__(self, scope, receive, send):
        pass


@pytest.mark.parametrize(("app", "expected"), [
    (astra_handler, Interface.ASTRA),
    (astra_async_handler, Interface.ASTRA),
    (wsgi_function, Interface.WSGI),
    (WSGIObject(), Interface.WSGI),  # an optional parameter does not count
    (ASGIObject(), Interface.ASGI),
    (lambda scope, receive, send: None, Interface.ASGI),
    (WSGIAdapter(wsgi_function), Interface.ASTRA),  # already adapted
])
def test_detect_reads_the_required_positional_arguments(app, expected):
    assert detect(app) is expected


def test_detect_knows_the_frameworks():
    from django.core.handlers.wsgi import WSGIHandler

    assert detect(wsgi_apps.make_flask_app()) is Interface.WSGI
    assert detect(WSGIHandler.__call__.__get__(object())) is Interface.WSGI  # a Django app's call, bound
    assert detect(asgi_apps.starlette_app()) is Interface.ASGI


@pytest.mark.parametrize("app", [lambda: None, lambda *args: None, lambda a, b, c, d: None, 42])
def test_an_application_that_fits_no_interface_must_be_named(app):
    with pytest.raises(ValueError, match="--interface"):
        detect(app)


def test_adapt_wraps_what_it_was_told_and_passes_the_root_path():
    handler, chosen = adapt(wsgi_function, "auto", root_path="/app")
    assert chosen is Interface.WSGI and isinstance(handler, WSGIAdapter)
    assert handler._environ.script_name == "/app"
    handler, chosen = adapt(ASGIObject(), Interface.ASGI, root_path="/app")
    assert isinstance(handler, ASGIHandler) and handler.root_path == "/app"
    assert adapt(astra_handler, "astra") == (astra_handler, Interface.ASTRA)


@pytest.mark.parametrize(("spec", "said"), [
    ("experiments.apps.bench:flask_app", "as WSGI"),
    ("experiments.apps.bench:starlette_app", "as ASGI"),  # and on asyncio, the runtime not being named
])
def test_the_cli_serves_an_application_it_was_not_told_about(spec, said):
    server = subprocess.Popen(
        [sys.executable, "-m", "astra", spec, "--bind", "127.0.0.1:0", "--root-path", "/mounted"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        url = server.stdout.readline().split()[-1]
        reply = httpx.get(url + "/mounted/")
        assert (reply.status_code, reply.text) == (200, "Hello World!")
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=15)
    assert f"serving {spec} {said} (--interface auto)" in err
    assert server.returncode == 0


def test_the_cli_refuses_an_asgi_application_on_a_thread_runtime():
    result = subprocess.run(
        [sys.executable, "-m", "astra", "experiments.apps.bench:starlette_app", "--runtime", "threaded",
         "--bind", "127.0.0.1:0"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0 and "use --runtime asyncio or trio" in result.stderr
