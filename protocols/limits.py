"""Protocol limits: how much a client may send before it is refused.

They live with the protocol layer because it is the protocol connection that
counts header and body bytes and answers 431 or 413; timeouts, which need a
clock and a way to wait, belong to the runtimes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    #: Largest request head (request line plus header fields); past it: 431.
    max_header_bytes: int = 16 * 1024
    #: Largest request body; a larger Content-Length is refused up front (413),
    #: a chunked body is cut off with 413 when it crosses the limit.
    max_body_bytes: int = 16 * 1024 * 1024
    #: When a handler answers without reading the whole request body, up to
    #: this many unread bytes are read and dropped to keep the connection
    #: alive; a larger (or chunked) remainder closes the connection instead.
    max_drain_bytes: int = 64 * 1024
