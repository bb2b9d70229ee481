"""A server with a known stall, to check what a load generator sees: it freezes ``--stall`` seconds every
``--every`` seconds, and otherwise answers every keep-alive request at once.

``python -m experiments.load.openload.stall_server --port 8000 [--stall 1 --every 10] [--work-us 100]``

One thread, ``selectors``, a fixed response: nothing of astra, so that the
only thing a latency distribution can show is the stall. An open-loop
generator must report about ``stall`` seconds for the requests due during a
freeze (``stall / every`` of them); a closed-loop one sends nothing while
the server is frozen and sees one slow request per connection.

``--work-us`` spins that long per request, so that the server's capacity
(about a million over it, less the loop's own cost) sits well below what
either generator can send: a saturation check then measures the server.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def serve(port: int, stall: float, every: float, work: float = 0.0) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=4096, reuse_port=False)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    pending: dict[socket.socket, bytes] = {}
    next_stall = time.monotonic() + every
    while True:
        if time.monotonic() >= next_stall:
            time.sleep(stall)  # the whole server freezes: nothing is read, nothing answered
            next_stall += every
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(conn, selectors.EVENT_READ)
                pending[conn] = b""
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                selector.unregister(sock)
                pending.pop(sock, None)
                sock.close()
                continue
            buffered = pending[sock] + data
            answers = buffered.count(b"\r\n\r\n")  # GET requests, no bodies
            pending[sock] = buffered[buffered.rfind(b"\r\n\r\n") + 4:] if answers else buffered
            if answers:
                if work:
                    _spin(work * answers)
                try:
                    sock.sendall(RESPONSE * answers)
                except OSError:
                    pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stall", type=float, default=1.0)
    p.add_argument("--every", type=float, default=10.0)
    p.add_argument("--work-us", type=float, default=0.0, help="CPU spent per request (busy loop), microseconds")
    args = p.parse_args()
    serve(args.port, args.stall, args.every, args.work_us / 1e6)


if __name__ == "__main__":
    main()
