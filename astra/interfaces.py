"""Which kind of application the CLI was given, and the handler that serves it.

``python -m astra MODULE:ATTR --interface auto|astra|wsgi|asgi``: an astra
handler takes a request (``handler(request)``), a WSGI application an
environ and ``start_response``, an ASGI one a scope, ``receive`` and
``send`` (and is awaited). ``auto`` tells them apart by how many
positional arguments the callable takes, which is the one thing the three
conventions disagree on; it says what it chose, and an application it
cannot read must be named with ``--interface``.
"""

from __future__ import annotations

import inspect
from enum import StrEnum
from typing import Any

from .asgi import ASGIHandler, LifespanMode
from .wsgi import WSGIAdapter

__all__ = ["Interface", "adapt", "detect"]


class Interface(StrEnum):
    """What ``--interface`` names (:func:`adapt`)."""

    AUTO = "auto"  #: tell from the callable's signature (:func:`detect`)
    ASTRA = "astra"  #: ``handler(request) -> Response``, plain or ``async def``
    WSGI = "wsgi"  #: PEP 3333: Flask, Django, Bottle, Falcon
    ASGI = "asgi"  #: ASGI 3: Starlette, FastAPI, Django's asgi.py (event-loop runtimes only)


def _positional_count(app: Any) -> int | None:
    target = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None  # (*args): could be anything
    return sum(1 for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               and p.default is p.empty)


def detect(app: Any) -> Interface:
    """The interface an application follows, read from its required positional arguments: one
    (a request) is astra's, two (environ, start_response) WSGI, three (scope, receive, send) ASGI.

    Raises ValueError when the signature says none of these.
    """
    if isinstance(app, (WSGIAdapter, ASGIHandler)):
        return Interface.ASTRA
    count = _positional_count(app)
    found = {1: Interface.ASTRA, 2: Interface.WSGI, 3: Interface.ASGI}.get(count)  # type: ignore[arg-type]
    if found is None:
        raise ValueError(f"cannot tell which interface {app!r} follows from its signature: "
                         "name it with --interface astra, wsgi or asgi")
    return found


def adapt(app: Any, interface: Interface | str = Interface.AUTO, *, root_path: str = "",
          multiprocess: bool = False, lifespan: LifespanMode | str = LifespanMode.AUTO) -> tuple[Any, Interface]:
    """(the astra handler serving ``app``, the interface it was taken to follow)."""
    chosen = Interface(interface)
    if chosen is Interface.AUTO:
        chosen = detect(app)
    if chosen is Interface.WSGI:
        return WSGIAdapter(app, root_path=root_path, multiprocess=multiprocess), chosen
    if chosen is Interface.ASGI:
        return ASGIHandler(app, root_path=root_path, lifespan=lifespan), chosen
    return app, chosen
