""":class:`WSGIAdapter`: a WSGI application as an astra handler."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TextIO

from protocols import Request, Response

from .environ import EnvironBuilder
from .exchange import Exchange

__all__ = ["WSGIAdapter"]

WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: write() data an application may hold before the Response exists (see Exchange).
DEFAULT_MAX_WRITE_BUFFER = 16 * 1024 * 1024


class WSGIAdapter:
    """An astra handler that runs a WSGI (PEP 3333) application::

        from astra import Server, WSGIAdapter
        from myproject.wsgi import application

        Server.bind("127.0.0.1:8000").serve(WSGIAdapter(application))

    A WSGI application blocks, and so does this handler: the thread runtimes
    run it on the request's thread, asyncio and trio on their worker pool.

    Options: ``root_path``, the path the application is mounted at
    (``SCRIPT_NAME``); ``multiprocess``, what ``wsgi.multiprocess`` says
    (True when the server runs several processes); ``errors``, the text
    stream behind ``wsgi.errors`` (default: the ``astra.wsgi`` logger);
    ``max_write_buffer``, the bytes an application may pass to ``write()``
    before its response can start (they are held until it returns).

    Any exception the application raises before its response starts
    propagates, and astra answers it as every handler failure: a logged
    500. One raised while the body streams cuts the response off.
    """

    __slots__ = ("app", "max_write_buffer", "_environ")

    def __init__(self, app: WSGIApplication, *, root_path: str = "", multiprocess: bool = False,
                 errors: TextIO | None = None, max_write_buffer: int = DEFAULT_MAX_WRITE_BUFFER) -> None:
        if not callable(app):
            raise TypeError(f"a WSGI application must be callable, not {type(app).__name__}")
        self.app = app
        self.max_write_buffer = max_write_buffer
        self._environ = EnvironBuilder(root_path, multiprocess, errors)

    def __call__(self, request: Request) -> Response:
        exchange = Exchange(self.max_write_buffer)
        return exchange.respond(self.app(self._environ.build(request), exchange.start_response))

    def __repr__(self) -> str:
        return f"<WSGIAdapter {getattr(self.app, '__name__', self.app)!r}>"
