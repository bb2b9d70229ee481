"""``ASGIHandler``: an ASGI 3 application as an astra ``async def`` handler.

Each request builds the app's ``http`` scope, starts ``app(scope, receive,
send)`` as a task of its own and waits, serving the app's body reads, until
the app starts its response (:mod:`.exchange`). The app's tasks run in a
task host the handler holds for the server's life, opened by the server's
lifespan hook (``runtimes/_async/server.py``): the loop's own task
machinery (an ``asyncio.TaskGroup``, a trio nursery), which costs about a
quarter of what anyio's task groups do per task, measured here, and a task
per request is the largest cost an ASGI server adds to a request. The same
hook runs the app's lifespan protocol (:mod:`.lifespan`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import anyio

from protocols import Headers, Request, Response
from protocols.request import TLSInfo

from runtimes.common import logger

from .exchange import Exchange
from .lifespan import AppLifespan, LifespanFailed, LifespanMode

__all__ = ["ASGIHandler", "TaskHost"]

#: Starts ``fn(*args)`` as a task.
Spawn = Callable[..., Any]
#: Opens a place for tasks: entering it yields a :data:`Spawn`, leaving it waits for the tasks.
TaskHost = Callable[[], AbstractAsyncContextManager[Spawn]]


@asynccontextmanager
async def _anyio_task_host() -> AsyncIterator[Spawn]:
    """The task host when a server offers none: an anyio task group."""
    async with anyio.create_task_group() as group:
        yield group.start_soon


class ASGIHandler:
    """Serve an ASGI 3 app (Starlette, FastAPI, ...) on astra's event-loop runtimes::

        Server.bind("127.0.0.1:8000", runtime="asyncio").serve(ASGIHandler(app))

    ``root_path``: the path the app is mounted at behind a proxy (the
    scope's ``root_path``). A request path under it is passed as it is; one
    outside it (a proxy that took the prefix off) gets it put back, since
    the spec's ``path`` includes the ``root_path``; the WSGI adapter's
    ``SCRIPT_NAME`` follows the same rule, so one ``--root-path`` works for
    both kinds of proxy and both interfaces. ``lifespan``: whether the app's lifespan protocol runs
    (:class:`~.lifespan.LifespanMode`). ``shutdown_timeout``: at shutdown,
    how long the app's work still running after its responses (background
    tasks) may go on before it is cancelled, and then how long its lifespan
    shutdown may take.

    One server at a time: the handler holds the app's tasks and lifespan state.
    """

    def __init__(self, app: Any, *, root_path: str = "", lifespan: LifespanMode | str = LifespanMode.AUTO,
                 shutdown_timeout: float = 5.0) -> None:
        self.app = app
        self.root_path = root_path = root_path.rstrip("/")
        self._prefix = root_path + "/"
        self._raw_root = quote(root_path).encode("ascii")
        self.lifespan_mode = LifespanMode(lifespan)
        self.shutdown_timeout = shutdown_timeout
        #: The lifespan state the app filled at startup; each request's scope gets a copy.
        self.state: dict[str, Any] = {}
        self._spawn: Spawn | None = None  # while serving: starts an app task
        self._serving = False
        self._claim = threading.Lock()
        self._running = 0  # app tasks not yet finished
        self._idle: anyio.Event | None = None  # set when _running reaches 0, while shutdown waits for it

    # One request ----------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        spawn = self._spawn
        if spawn is None:
            raise RuntimeError("an ASGIHandler serves on an event-loop runtime (asyncio, trio), which starts it")
        connection = request.connection
        target = request.target
        if target[0] == "/":  # origin-form: nearly every request
            raw_path, _, query = target.partition("?")
        else:
            raw_path, query = _split_other_form(target)
        root_path = self.root_path
        path = request.path
        raw = raw_path.encode("latin-1")  # the target's bytes, as sent
        if root_path and not (path == root_path or path.startswith(self._prefix)):
            # The proxy took the mount point off: put it back, as the spec's path includes it.
            path = root_path + path
            raw = self._raw_root + raw
        exchange = Exchange(request)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": request.http_version,
            "server": connection.local,
            "client": connection.peer,
            "scheme": connection.scheme,
            "method": request.method,
            "root_path": root_path,
            "path": path,
            "raw_path": raw,
            "query_string": query.encode("latin-1"),
            "headers": _raw_headers(request.headers),
            "state": self.state.copy(),
        }
        if connection.tls is not None:
            scope["extensions"] = {"tls": _tls_extension(connection.tls)}
        self._running += 1
        try:
            spawn(self._run_app, scope, exchange)
        except BaseException:
            self._running -= 1
            raise
        try:
            return await exchange.respond()
        except BaseException:
            exchange.close()  # cancelled (a deadline, a forced shutdown) or failed: release the app
            raise

    async def _run_app(self, scope: dict[str, Any], exchange: Exchange) -> None:
        """The app task. It never raises (but for its cancellation): the task host would end the server's tasks."""
        error = None
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException as exc:  # SystemExit too: one request must not stop the server
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                exchange.close()
                exchange.app_finished(None)
                raise
            error = exc
        finally:
            self._running -= 1
            if not self._running and self._idle is not None:
                self._idle.set()
        exchange.app_finished(error)

    # The server's life ----------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, tasks: TaskHost | None = None) -> AsyncIterator[None]:
        """The server's lifespan hook: the app's startup, its tasks' host while serving, its shutdown.

        ``tasks``: where the app's per-request tasks run (the runtime's own,
        cheapest task machinery); an anyio task group without it.
        """
        with self._claim:  # two servers on two threads: without a GIL the check and the set could interleave
            if self._serving:
                raise RuntimeError("this ASGIHandler is serving already (one server at a time)")
            self._serving = True
        self.state = {}
        failure: LifespanFailed | None = None
        try:
            async with anyio.create_task_group() as group:  # the lifespan task's, for the server's life
                life = None
                if self.lifespan_mode is not LifespanMode.OFF:
                    life = AppLifespan(self.app, self.state)
                    group.start_soon(life.run)
                    try:
                        if not await life.startup(required=self.lifespan_mode is LifespanMode.ON):
                            life = None
                    except LifespanFailed as exc:
                        failure = exc  # raised out here, not wrapped in the task group's exception group
                        group.cancel_scope.cancel()
                if failure is None:
                    try:
                        async with self._app_tasks(tasks or _anyio_task_host):
                            yield
                    finally:
                        if life is not None:
                            await life.shutdown(self.shutdown_timeout)
                        group.cancel_scope.cancel()
            if failure is not None:
                raise failure
        finally:
            self._serving = False

    @asynccontextmanager
    async def _app_tasks(self, host: TaskHost) -> AsyncIterator[None]:
        """Host the app's tasks; on leaving, give those still running shutdown_timeout, then cancel them."""
        with anyio.CancelScope() as scope:
            async with host() as spawn:
                self._spawn = spawn
                try:
                    yield
                finally:
                    self._spawn = None
                    try:
                        await self._settle()
                    finally:
                        scope.cancel()

    async def _settle(self) -> None:
        """Wait up to shutdown_timeout for the app tasks still running (background work, say)."""
        if self._running:
            self._idle = anyio.Event()
            with anyio.move_on_after(self.shutdown_timeout):
                await self._idle.wait()
            self._idle = None
            if self._running:
                logger.warning("cancelling %d ASGI app tasks still running at shutdown", self._running)


def _raw_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The request's fields as ASGI has them: lower-case names and values, in bytes, in order."""
    try:
        return headers._raw  # HTTP/1.1: the parser's own list (made for this request), not decoded yet
    except AttributeError:  # HTTP/2 fields arrive decoded
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _split_other_form(target: str) -> tuple[str, str]:
    """(path, query) of an absolute-form target (``http://host/p?q``) or of ``*`` (OPTIONS)."""
    if target == "*":
        return "*", ""
    parts = urlsplit(target)
    return parts.path or "/", parts.query


def _tls_extension(tls: TLSInfo) -> dict[str, Any]:
    """The ASGI TLS extension's entry (spec 0.2): only ever for a connection over TLS."""
    return {"server_cert": tls.server_certificate, "client_cert_chain": list(tls.client_certificate_chain),
            "client_cert_name": tls.client_certificate_name, "client_cert_error": None,
            "tls_version": tls.version_code, "cipher_suite": tls.cipher_code}
