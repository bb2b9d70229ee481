"""WSGI applications for tests/test_wsgi.py: plain PEP 3333 ones, a Flask app and a Django app.

The plain applications are written against PEP 3333 alone (no framework)
and dispatch on ``PATH_INFO``, so one server answers a whole test's worth
of cases. Each keeps what the test must check afterwards (how often an
iterable was closed, what the application saw) on itself: the server runs
in the test's process, on other threads.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator

# -- helpers ---------------------------------------------------------------------------


class Recorder:
    """Middleware that keeps every exception out of an application, its iteration and its ``close()``.

    Wrapped around ``wsgiref.validate.validator(app)``, it turns the
    validator's complaints (AssertionError, and WSGIWarning when warnings
    are errors) into a list the test can assert empty: they would otherwise
    become 500s and log lines, easy to miss.
    """

    def __init__(self, app) -> None:
        self.app = app
        self.errors: list[BaseException] = []
        self.closes = Counter()  # PATH_INFO -> close() calls
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        try:
            result = self.app(environ, start_response)
        except BaseException as exc:
            self.errors.append(exc)
            raise
        return _Recorded(self, result, environ["PATH_INFO"])


class _Recorded:
    def __init__(self, recorder: Recorder, result, path: str) -> None:
        self.recorder = recorder
        self.result = result
        self.path = path

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.result
        except BaseException as exc:
            self.recorder.errors.append(exc)
            raise

    def close(self) -> None:
        with self.recorder.lock:
            self.recorder.closes[self.path] += 1
        try:
            self.result.close()
        except BaseException as exc:
            self.recorder.errors.append(exc)
            raise


class Closing:
    """An iterable response that counts its ``close()`` calls, optionally failing part-way."""

    def __init__(self, log: Counter, key: str, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.log = log
        self.key = key
        self.chunks = chunks
        self.fail_after = fail_after

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_after:
                raise RuntimeError(f"body of {self.key} failed after {i} chunks")
            yield chunk

    def close(self) -> None:
        self.log[self.key] += 1


def text(start_response, body: bytes, status: str = "200 OK", extra=()) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *extra])
    return [body]


# -- plain PEP 3333 applications --------------------------------------------------------

def environ_app(environ, start_response):
    """The environ's CGI variables and wsgi.* facts, as JSON."""
    seen = {key: value for key, value in environ.items() if isinstance(value, str)}
    seen["wsgi.version"] = list(environ["wsgi.version"])
    seen["wsgi.multithread"] = environ["wsgi.multithread"]
    seen["wsgi.multiprocess"] = environ["wsgi.multiprocess"]
    seen["wsgi.run_once"] = environ["wsgi.run_once"]
    seen["wsgi.input_terminated"] = environ["wsgi.input_terminated"]
    seen["body"] = environ["wsgi.input"].read().decode("latin-1")
    body = json.dumps(seen).encode()
    return text(start_response, body, extra=[("X-Kind", "environ")])


def validated_cases(environ, start_response):
    """The shapes of answer the validator test walks through, one per path."""
    path = environ["PATH_INFO"]
    if path == "/list":
        return text(start_response, b"listed")
    if path == "/lazy":
        def lazy():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"la"
            yield b""
            yield b"zy"
        return lazy()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"wri")
        return [b"tten"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"f" * 100_000), 4096)
    if path == "/upload":
        stream = environ["wsgi.input"]
        first = stream.readline(65536)
        pieces = stream.readlines(1 << 20)
        rest = stream.read(65536)
        environ["wsgi.errors"].write("upload read\n")
        environ["wsgi.errors"].flush()
        size = len(first) + sum(map(len, pieces)) + len(rest)
        return text(start_response, b"%d lines %d bytes" % (1 + len(pieces), size))
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/recovered":  # exc_info before the head: the 500 replaces the 200
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("the application noticed a problem")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"recovered"]
    return text(start_response, b"no such case", "404 Not Found")


def upload_app(environ, start_response):
    """Reads the body in pieces through wsgi.input and answers its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    read = environ["wsgi.input"].read
    while piece := read(65536):
        digest.update(piece)
        size += len(piece)
    return text(start_response, f"{size} {digest.hexdigest()}".encode())


# -- Flask --------------------------------------------------------------------------------

def make_flask_app():
    import flask

    app = flask.Flask("astra_wsgi_tests")

    @app.get("/")
    def index():
        return "flask index"

    @app.get("/items/<int:item_id>")
    def item(item_id: int):
        return flask.jsonify(id=item_id, q=flask.request.args.get("q"))

    @app.post("/form")
    def form():
        return f"hello {flask.request.form['name']}"

    @app.post("/upload")
    def upload():
        sent = flask.request.files["file"]
        data = sent.read()
        return flask.jsonify(name=sent.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    @app.get("/stream")
    def stream():
        return flask.Response((f"line {i}\n" for i in range(100)), mimetype="text/plain")

    @app.get("/cookie/set")
    def set_cookie():
        response = flask.make_response("set")
        response.set_cookie("flavour", "oat")
        return response

    @app.get("/cookie/get")
    def get_cookie():
        return flask.request.cookies.get("flavour", "none")

    @app.get("/missing")
    def missing():
        flask.abort(404)

    @app.get("/boom")
    def boom():
        raise RuntimeError("the Flask view failed")

    return app


# -- Django -------------------------------------------------------------------------------

def make_django_app():
    """Django configured in this process: settings, a URLconf (this module's ``urlpatterns``), two views."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="astra-tests-only",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[],
            MIDDLEWARE=["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"],
            DATABASES={},
            USE_TZ=True,
            LOGGING_CONFIG=None,  # leave the test run's logging alone
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _django_urlpatterns() -> list:
    from django.http import HttpResponse, JsonResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    def hello(request):
        return HttpResponse(f"django {request.method} {request.path}", content_type="text/plain")

    @csrf_exempt
    def form(request):
        if request.method != "POST":
            return HttpResponse(status=405)
        return JsonResponse({"name": request.POST.get("name"), "tags": request.POST.getlist("tag"),
                             "host": request.get_host()})

    return [path("hello/", hello), path("form/", form)]


def __getattr__(name: str):
    # Django asks this module for its URLconf only once configured: build it then.
    if name == "urlpatterns":
        patterns = globals()["urlpatterns"] = _django_urlpatterns()
        return patterns
    raise AttributeError(name)
