"""A well-behaved runtime in a few lines, for the sans-IO HTTP/1.1 tests: :func:`drive` feeds
bytes to :class:`HTTP11Connection`, answers every complete request and records what happened.

The autouse fixture :func:`h1_parser` runs a test once per HTTP/1 parser (:data:`H1_PARSERS`);
a module that imports it gets that for all its tests (``test_protocol_h1_strict``,
``test_protocol_http11``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest

from protocols import (
    BodyEnded,
    BodyReceived,
    ConnectionClosed,
    ConnectionInfo,
    HTTP11Connection,
    Limits,
    ProtocolFailed,
    RequestReceived,
    Response,
)

from .conftest import header, parse_responses

INFO = ConnectionInfo(("10.0.0.1", 1234), ("10.0.0.2", 80))
#: More events than any test input can honestly produce: reaching it means a loop.
MAX_EVENTS = 10_000

#: The HTTP/1 parsers the policy is tested over: h11's adapter and llhttp's (httptools).
H1_PARSERS = ["h11", "httptools"]
#: The parser of the running test (set by :func:`h1_parser`).
PARSER = "h11"


@pytest.fixture(autouse=True, params=H1_PARSERS)
def h1_parser(request) -> Iterator[str]:
    """Run the test with each parser; :func:`limits` and :func:`drive` pick it up."""
    global PARSER
    PARSER = request.param
    yield PARSER
    PARSER = "h11"


def limits(**values: int) -> Limits:
    """:class:`Limits` with the running test's parser."""
    return Limits(http1_parser=PARSER, **values)


@dataclass
class Served:
    method: str
    target: str
    host: str | None
    body: bytes = b""


@dataclass
class Outcome:
    """What a connection made of some bytes."""

    served: list[Served] = field(default_factory=list)  # complete requests, answered in order
    partial: Served | None = None  # a request whose body had not ended
    failed: int | None = None  # the status of the server's own error answer
    closed: bool = False  # the connection is done (failed, client gone, or Connection: close)
    output: bytes = b""

    @property
    def targets(self) -> list[str]:
        return [s.target for s in self.served]


def drive(pieces: Iterable[bytes], limits: Limits | None = None, *, eof: bool = False) -> Outcome:
    """Feed ``pieces`` one receive_data call each, answering each complete request with 200.

    ``limits`` name the parser too (by default the running test's, see
    :func:`h1_parser`). Raises AssertionError when the connection produces an
    implausible number of events (a loop) or breaks the event contract; any
    other exception is the connection's own and propagates.
    """
    conn = HTTP11Connection(INFO, limits or Limits(http1_parser=PARSER))
    outcome = Outcome()
    count = 0
    pieces = list(pieces)
    if eof:
        pieces.append(b"")
    for piece in pieces:
        if conn.should_close:
            break
        conn.receive_data(piece)
        while True:
            events = conn.events()
            count += len(events)
            assert count < MAX_EVENTS, "the connection keeps producing events"
            answered = False
            for event in events:
                if isinstance(event, RequestReceived):
                    assert outcome.partial is None, "a request started before the last one ended"
                    request = event.request
                    outcome.partial = Served(request.method, request.target, request.headers.get("host"))
                elif isinstance(event, BodyReceived):
                    assert outcome.partial is not None and event.data
                    outcome.partial.body += event.data
                elif isinstance(event, BodyEnded):
                    assert outcome.partial is not None
                    outcome.served.append(outcome.partial)
                    outcome.partial = None
                    conn.send_response(event.stream_id, Response(b"ok"))
                    conn.send_data(event.stream_id, b"ok")
                    conn.end_stream(event.stream_id)
                    answered = True
                elif isinstance(event, ProtocolFailed):
                    outcome.failed = event.status
                elif isinstance(event, ConnectionClosed):
                    outcome.closed = True
                else:
                    raise AssertionError(f"unexpected event {event!r}")
            # An answer releases the next pipelined request; anything else means
            # events() has said all it can until more bytes arrive.
            if not answered or conn.should_close:
                break
    outcome.output = conn.data_to_send()
    outcome.closed = outcome.closed or conn.should_close
    return outcome


def serve(raw: bytes, **values: int) -> Outcome:
    return drive([raw], limits(**values))


def refused(outcome: Outcome, status: int = 400) -> None:
    """The request was answered with ``status`` by the server itself, and the connection closes."""
    assert outcome.failed == status, outcome
    assert outcome.closed
    response, _ = parse_responses(outcome.output)[-1]  # after the answers to any earlier requests
    assert response.status_code == status
    assert header(response, "connection") == "close"
