"""The handler the soak and shutdown experiments serve: one app with every door a hostile client knocks on.

``python -m astra experiments.apps.soak:app`` serves it. Routes:

- ``GET /``: hello world, the normal visitors' page (small, so their latency
  measures the server's responsiveness, not its bandwidth);
- ``GET /big``: a response held whole in memory (1 MiB; ``?mib=N`` for more),
  what slow readers and zero-window HTTP/2 clients ask for. Each response
  is a fresh buffer, as a rendered page or a file read would be: one
  shared constant would make a server that holds a thousand responses for
  slow clients look as if it held one;
- ``POST /upload``: reads the body in chunks and answers its size, so
  trickled bodies meet a handler that really waits for them (a handler that
  ignored its body would let the server drain or drop it instead);
- ``GET /sleep?ms=N``: blocks its thread for N ms (default 1000), the
  in-flight request of the graceful-shutdown check and the work a
  rapid-reset attacker makes the server start.

Blocking handlers only: the event-loop runtimes run them on their worker
pool, which is the part of those runtimes a hostile client can exhaust.
"""

from __future__ import annotations

import threading
import time

from astra import Response

_sleeping = 0  # /sleep handlers running now: the shutdown experiment waits for all of them before SIGTERM
_sleeping_lock = threading.Lock()

MIB = 1024 * 1024
BIG = b"x" * MIB


def _number(request, name: str, default: float) -> float:
    try:
        return float(request.query_params.get(name, [default])[0])
    except ValueError:
        return default


def app(request) -> Response:
    path = request.path
    if path == "/big":
        mib = max(1, int(_number(request, "mib", 1)))
        body = BIG[1:] + b"x" if mib == 1 else BIG * mib  # a new object either way (and every page written)
        return Response(body, content_type="application/octet-stream")
    if path == "/upload":
        size = 0
        for chunk in request.body:  # chunk by chunk: a trickle keeps the handler waiting, as in real life
            size += len(chunk)
        return Response(f"received {size} bytes")
    if path == "/sleep":
        global _sleeping
        with _sleeping_lock:
            _sleeping += 1
        try:
            time.sleep(max(0.0, _number(request, "ms", 1000)) / 1000)
        finally:
            with _sleeping_lock:
                _sleeping -= 1
        return Response("slept")
    if path == "/sleeping":
        return Response(str(_sleeping))
    if request.method == "POST":
        request.read()
    return Response("Hello World!")
