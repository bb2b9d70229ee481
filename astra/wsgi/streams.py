"""The three streams of a WSGI environ: ``wsgi.input``, ``wsgi.errors`` and ``wsgi.file_wrapper``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from protocols import RequestBody

__all__ = ["EMPTY_INPUT", "ErrorStream", "FileWrapper", "WSGIInput"]


class WSGIInput:
    """``wsgi.input``: the request body as PEP 3333's file, read from the client as the application asks.

    A thin layer over astra's :class:`~astra.RequestBody`, which already
    streams: nothing is buffered beyond what one call asks for, so an upload
    of many megabytes read in pieces never sits in memory whole. What it
    adds is the file protocol WSGI promises and astra's body does not:
    ``size=None`` meaning "all", ``readlines`` and iteration by lines (astra
    iterates a body by chunks). A client that goes away mid-body raises
    astra's ``ClientDisconnected`` out of the read; the application may let
    it propagate, and the runtime then drops the request quietly.
    """

    __slots__ = ("_body",)

    def __init__(self, body: RequestBody) -> None:
        self._body = body

    def read(self, size: int | None = -1) -> bytes:
        return self._body.read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._body.readline(-1 if size is None else size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        readline = self._body.readline
        while line := readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        readline = self._body.readline
        while line := readline():
            yield line

    def readinto(self, buffer: bytearray | memoryview) -> int:
        return self._body.readinto(buffer)

    def readable(self) -> bool:
        return True


#: ``wsgi.input`` of every request without a body. It holds no state (an
#: empty body stays empty), so one serves every such request.
EMPTY_INPUT = WSGIInput(RequestBody())


class ErrorStream:
    """``wsgi.errors``: a text stream whose writes become records of the ``astra.wsgi`` logger.

    Writes are not buffered into lines: the stream is shared by every
    request on every thread, and a per-request buffer would cost an object
    for each request that never writes (nearly all of them). Each write is
    one record, its trailing newline dropped, and a write of nothing but a
    newline is dropped whole, so ``print(msg, file=errors)`` (two writes)
    logs one record.
    """

    __slots__ = ("_log",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("astra.wsgi")

    def write(self, text: str) -> int:
        if type(text) is not str:
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        message = text.rstrip("\r\n")
        if message:
            self._log.error("%s", message)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing is held back: every write is logged at once."""


class FileWrapper:
    """``wsgi.file_wrapper``: a file the application returns, for astra to send as a file.

    Returned as is (the class is exact, so no middleware has wrapped the
    iterable), the adapter hands ``filelike`` to astra's ``Body``, which
    reads it in large blocks and, for a regular file, sends its remaining
    size as ``Content-Length``. Iterating it in ``blksize`` blocks is for
    middleware that looks inside the response, as PEP 3333 requires.
    """

    __slots__ = ("filelike", "blksize")

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while block := read(self.blksize):
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
