"""The WSGI ``environ`` of an astra request (PEP 3333, with CGI's variable names).

Built once per request, so it is built cheaply: the keys that never change
are one dict merged into a literal, the header fields are translated in one
loop through a remembered name -> key table, and nothing is parsed that the
request does not contain (a path without ``%`` is used as it is).

Strings follow PEP 3333's rule for "native strings": every value is a
``str`` whose characters are the bytes received, decoded as latin-1. The
application re-encodes them to get the bytes back (``PATH_INFO`` after
percent-decoding too, so a UTF-8 path arrives as its UTF-8 bytes, each a
character, as every WSGI server and framework expects).
"""

from __future__ import annotations

from typing import Any, TextIO
from urllib.parse import unquote_to_bytes, urlsplit

from protocols import Request

from .streams import EMPTY_INPUT, ErrorStream, FileWrapper, WSGIInput

__all__ = ["EnvironBuilder", "split_target"]

_SERVER_PROTOCOLS = {"1.1": "HTTP/1.1", "2": "HTTP/2", "1.0": "HTTP/1.0"}
_DEFAULT_PORTS = {"http": "80", "https": "443"}

#: A header name, as astra gives it (lower case), -> its environ key, or ""
#: for a name that is dropped. Filled as names are first seen, up to a bound
#: (a client can send any names it likes).
_KEYS: dict[str, str] = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
_KEYS_MAX = 4096


def _key_for(name: str) -> str:
    """``x-forwarded-for`` -> ``HTTP_X_FORWARDED_FOR``; "" for a name with ``_``.

    CGI turns ``-`` into ``_``, so ``X-User_Id`` and ``X-User-Id`` would
    land on the same key: a client could then pass off its own header as one
    a proxy in front sets. Such names are dropped, as gunicorn and waitress
    drop them.
    """
    key = "" if "_" in name else "HTTP_" + name.upper().replace("-", "_")
    if len(_KEYS) < _KEYS_MAX:
        _KEYS[name] = key
    return key


def split_target(target: str) -> tuple[str, str]:
    """``(PATH_INFO before the root path is taken off, QUERY_STRING)`` of a request target."""
    if target[:1] == "/":  # origin-form, nearly always
        path, _, query = target.partition("?")
    elif "://" in target:  # absolute-form, as sent to proxies
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    else:  # "*" (OPTIONS) or an authority
        path, query = target, ""
    if "%" in path:
        path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    return path, query


def _server_address(host: str, scheme: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT from a Host value (checked by the protocol layer)."""
    if host[:1] == "[":  # an IPv6 literal: [::1]:8080
        end = host.find("]") + 1
        name, port = host[:end], host[end + 1:]
    else:
        name, _, port = host.partition(":")
    return name, port or _DEFAULT_PORTS.get(scheme, "80")


class EnvironBuilder:
    """Makes the environ of each request for one application.

    ``root_path`` is where the application is mounted (``SCRIPT_NAME``): a
    request path under it reaches the application with it taken off
    ``PATH_INFO``. ``multiprocess`` is what the application is told in
    ``wsgi.multiprocess`` (True when several server processes serve it).
    ``errors`` is ``wsgi.errors``: by default the ``astra.wsgi`` logger.
    """

    __slots__ = ("constants", "script_name", "_prefix")

    def __init__(self, root_path: str = "", multiprocess: bool = False, errors: TextIO | None = None) -> None:
        root = root_path.rstrip("/")
        if root and not root.startswith("/"):
            raise ValueError(f"root_path must start with '/', not {root_path!r}")
        # The mount point as PEP 3333 strings hold it: its UTF-8 bytes, each a character.
        self.script_name = root.encode("utf-8").decode("latin-1")
        self._prefix = self.script_name + "/"
        self.constants: dict[str, Any] = {
            "SCRIPT_NAME": self.script_name,
            "SERVER_SOFTWARE": "astra",
            "wsgi.version": (1, 0),
            "wsgi.errors": errors if errors is not None else ErrorStream(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,  # read to EOF: a body without Content-Length ends by itself
            "wsgi.file_wrapper": FileWrapper,
        }

    def build(self, request: Request) -> dict[str, Any]:
        connection = request.connection
        scheme = connection.scheme
        path, query = split_target(request.target)
        script_name = self.script_name
        if script_name and (path == script_name or path.startswith(self._prefix)):
            path = path[len(script_name):]
        body = request.body
        version = request.http_version
        environ = self.constants.copy()  # cheaper than merging it into a literal
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = path
        environ["QUERY_STRING"] = query
        environ["SERVER_PROTOCOL"] = _SERVER_PROTOCOLS.get(version) or "HTTP/" + version
        environ["wsgi.url_scheme"] = scheme
        environ["wsgi.input"] = EMPTY_INPUT if body.complete else WSGIInput(body)
        peer = connection.peer
        if peer is not None:
            environ["REMOTE_ADDR"] = peer[0]
            environ["REMOTE_PORT"] = str(peer[1])
        keys = _KEYS
        for name, value in request.headers:
            key = keys.get(name)
            if key is None:
                key = _key_for(name)
            if not key:
                continue
            if key in environ:  # a repeated field: one value, as CGI has room for
                value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
            environ[key] = value
        host = environ.get("HTTP_HOST")
        if host:
            environ["SERVER_NAME"], environ["SERVER_PORT"] = _server_address(host, scheme)
        else:  # HTTP/1.0 without Host: the address the client reached
            local = connection.local
            environ["SERVER_NAME"], environ["SERVER_PORT"] = (local[0], str(local[1])) if local else ("", "")
        return environ
