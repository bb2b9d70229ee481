"""Protocol limits: how much a client may send before it is refused.

They live with the protocol layer because it is the protocol connection that
counts header and body bytes and answers 431 or 413; timeouts, which need a
clock and a way to wait, belong to the runtimes.

The HTTP/2 fields are advertised to the client in the server's SETTINGS frame
(or enforced by the server alone, for the reset budget). Their defaults bound
what one connection can make the server hold: at most
``max_concurrent_streams`` handlers at once, at most ``connection_window``
bytes of request bodies buffered ahead of the handlers reading them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .h1_parser import Http1Parser, parser_factory

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    #: Largest request head (request line plus header fields); past it: 431.
    #: On HTTP/2 it is the SETTINGS_MAX_HEADER_LIST_SIZE advertised. On
    #: HTTP/1.1 it also bounds a chunked body's extensions and trailer fields
    #: together (400 and 431 past it; see ``h1_body``).
    max_header_bytes: int = 16 * 1024
    #: Largest request body; a larger Content-Length is refused up front (413),
    #: a chunked body is cut off with 413 when it crosses the limit.
    max_body_bytes: int = 16 * 1024 * 1024
    #: When a handler answers without reading the whole request body, up to
    #: this many unread bytes are read and dropped to keep the connection
    #: alive; a larger (or chunked) remainder closes the connection instead.
    max_drain_bytes: int = 64 * 1024
    #: Not a limit: which parser reads HTTP/1.1 request heads, a
    #: :class:`~.h1_parser.Http1Parser` (or its value as a string); by
    #: default httptools when it is installed, else h11 (``auto``). The
    #: policy (every limit here, the strict reading of RFC 9112, keep-alive) and
    #: the body decoder are the same whichever parser runs; see ``h1_parser``.
    #: It travels with the limits because they are what every runtime hands
    #: to the protocol layer for each connection.
    http1_parser: Http1Parser = Http1Parser.AUTO

    # -- HTTP/2 --------------------------------------------------------------
    #: Streams (requests) in progress at once on one connection. A stream
    #: counts until its handler has finished, even if the client reset it: a
    #: reset frees the client's slot, not the server's work (CVE-2023-44487).
    max_concurrent_streams: int = 100
    #: Request body bytes a client may send on one stream, and on the whole
    #: connection, before the handlers have read them (flow-control windows).
    stream_window: int = 256 * 1024
    connection_window: int = 1024 * 1024
    #: Largest frame payload the server accepts (16 KiB to 16 MiB - 1).
    max_frame_size: int = 16 * 1024
    #: Streams a client may reset before their responses are complete,
    #: beyond one for every two responses completed; past it the connection
    #: is closed with GOAWAY ENHANCE_YOUR_CALM (the rapid-reset attack).
    max_client_resets: int = 100

    def __post_init__(self) -> None:
        # An unknown choice (ValueError) or a missing httptools (ImportError)
        # fails here, when the server is configured, not at its first connection.
        parser_factory(self.http1_parser)
        object.__setattr__(self, "http1_parser", Http1Parser(self.http1_parser))  # "h11" -> Http1Parser.H11
