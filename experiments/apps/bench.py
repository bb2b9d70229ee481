"""The applications ``make bench-apps`` serves on astra and on its peers.

The same application object goes to every server, so that what differs is
the server: a WSGI app for astra (``--interface wsgi``), gunicorn, waitress
and granian; an ASGI app for astra's event loops (``--interface asgi``),
uvicorn, hypercorn and granian. Each answers ``GET /`` with ``Hello World!``:
the least an application can do, so the server's share of the cost shows.

* ``wsgi_hello`` / ``asgi_hello``: the bare interface, no framework
  (``experiments.apps.peers``). On astra, set against the native handler on the
  same runtime, they measure what the interface layer costs.
* ``flask_app``: Flask's routing, request and response objects, as a Flask
  user deploys it.
* ``starlette_app``: the same in Starlette (FastAPI is Starlette underneath).
"""

from __future__ import annotations

from .peers import asgi_hello, wsgi_hello

__all__ = ["asgi_hello", "flask_app", "starlette_app", "wsgi_hello"]

BODY = "Hello World!"


def _flask_app():
    from flask import Flask, Response

    app = Flask("astra_bench")

    @app.route("/")
    def hello():
        return Response(BODY, mimetype="text/plain")

    return app


def _starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        return PlainTextResponse(BODY)

    return Starlette(routes=[Route("/", hello)])


# Built at import, not on first attribute access: hypercorn finds an app by evaluating its name in the
# module's namespace, which a module-level __getattr__ does not serve. Without Flask or Starlette
# installed the module still imports; the apps are then missing, as the bench says.
for _name, _make in (("flask_app", _flask_app), ("starlette_app", _starlette_app)):
    try:
        globals()[_name] = _make()
    except ImportError:
        pass
