"""Hello-world apps for the peer servers astra is benchmarked against.

* ``asgi_hello``: for hypercorn and uvicorn (``experiments.apps.peers:asgi_hello``).
* ``wsgi_hello``: for waitress (``experiments.apps.peers:wsgi_hello``).
* ``python -m experiments.apps.peers stdlib PORT``: the standard library's
  ``ThreadingHTTPServer`` on 127.0.0.1:PORT, as shipped (keep-alive on);
  ``stdlib-tuned`` is the same with Nagle off and a real listen backlog.
* ``python -m experiments.apps.peers floor-NAME PORT``: the raw-socket floors
  (a canned response, no HTTP): ``floor-threads`` (a thread per connection),
  ``floor-selectors`` (one selector thread answering), ``floor-reactor-pool``
  (a selector thread reading, pool threads sending), ``floor-asyncio``
  (an ``asyncio.Protocol``), ``floor-uvloop`` (the same on uvloop) and
  ``floor-trio`` (trio streams).

Every app answers any request with ``200 Hello World!`` (text/plain, with a
Content-Length), as ``experiments.apps:hello`` does on astra.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"Hello World!"
_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(BODY)).encode())]


async def answer_lifespan(receive, send) -> None:
    """Answer an ASGI lifespan scope, so servers neither warn about it nor wait on it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def asgi_hello(scope, receive, send):
    if scope["type"] == "lifespan":
        return await answer_lifespan(receive, send)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def wsgi_hello(environ, start_response):
    start_response("200 OK", [(k.decode(), v.decode()) for k, v in _HEADERS])
    return [BODY]


class HelloHandler(BaseHTTPRequestHandler):
    """The standard library as its users meet it, keep-alive switched on.

    The head and body go out in two writes (``end_headers`` flushes the head),
    and Nagle's algorithm is left on: a keep-alive client then waits for its
    delayed ACK on every request. That stall is the stock behaviour astra's
    benchmark is asked to compare against; ``TunedHelloHandler`` removes it.
    """

    protocol_version = "HTTP/1.1"  # keep-alive, as the other servers do

    def payload(self) -> tuple[str, bytes]:
        """(content type, body) of the answer; subclasses serve other workloads."""
        return "text/plain; charset=utf-8", BODY

    def _respond(self, with_body: bool) -> None:
        content_type, body = self.payload()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._respond(True)

    def do_HEAD(self) -> None:
        self._respond(False)

    def log_message(self, format, *args) -> None:  # no per-request logging
        pass


class TunedHelloHandler(HelloHandler):
    # With Nagle off the second write goes out at once instead of waiting
    # for the client's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is not news
            super().handle_error(request, client_address)


class TunedServer(QuietServer):
    # socketserver's default listen backlog is 5: 64 connections opened at
    # once overflow it and wait out SYN retransmits (1 s and more).
    request_queue_size = 1024


VARIANTS = {"stdlib": (QuietServer, HelloHandler), "stdlib-tuned": (TunedServer, TunedHelloHandler)}


# Raw-socket floors: a canned response, no HTTP parsing at all. What is left
# is the cost of the runtime itself (accepting, waking, reading, writing), so
# a server's distance from its floor is what its protocol layer costs.
CANNED = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n"
          b"content-length: 12\r\n\r\nHello World!")


def _requests_in(data: bytes, pending: bytes) -> tuple[int, bytes]:
    """Count complete request heads (GETs, no bodies); return (count, leftover)."""
    data = pending + data
    count = data.count(b"\r\n\r\n")
    return count, data[data.rfind(b"\r\n\r\n") + 4:] if count else data


def floor_threads(port: int) -> None:
    import threading

    listener = socket.create_server(("127.0.0.1", port), backlog=4096)

    def serve(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        with sock:
            while data := _recv(sock):
                count, pending = _requests_in(data, pending)
                sock.sendall(CANNED * count)

    print(f"listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionError:
        return b""


def floor_uvloop(port: int) -> None:
    """floor-asyncio on uvloop's loop."""
    import uvloop

    floor_asyncio(port, uvloop.new_event_loop)


def floor_asyncio(port: int, loop_factory=None) -> None:
    import asyncio

    class Canned(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.pending = transport, b""

        def data_received(self, data):
            count, self.pending = _requests_in(data, self.pending)
            self.transport.write(CANNED * count)

    async def main():
        server = await asyncio.get_running_loop().create_server(Canned, "127.0.0.1", port, backlog=4096)
        print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    if loop_factory is None:
        asyncio.run(main())
    else:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main())


def floor_trio(port: int) -> None:
    import trio

    async def serve(stream):
        pending = b""
        try:
            while data := await stream.receive_some(65536):
                count, pending = _requests_in(data, pending)
                await stream.send_all(CANNED * count)
        except trio.BrokenResourceError:
            pass

    async def main():
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=4096)
        print(f"listening on http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
        await trio.serve_listeners(serve, listeners)

    trio.run(main)


class _Reactor:
    """One thread, one selector, non-blocking sockets: the core of the selector floors.

    ``answer(sock, count)`` is called with each connection's complete requests
    as they arrive; ``answer(sock, 0)`` once, at end of stream, for the closing.
    """

    def __init__(self, port: int, answer) -> None:
        import selectors

        self.listener = socket.create_server(("127.0.0.1", port), backlog=4096)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.answer = answer

    def run(self) -> None:
        print(f"listening on http://127.0.0.1:{self.listener.getsockname()[1]}", flush=True)
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj, key.data)

    def _accept(self) -> None:
        import selectors

        while True:  # the whole backlog per wake-up, as astra's reactors do
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.selector.register(sock, selectors.EVENT_READ, [b""])  # [pending bytes], mutable

    def _read(self, sock: socket.socket, state: list[bytes]) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            data = b""
        if not data:
            self.selector.unregister(sock)
            self.answer(sock, 0)
            return
        count, state[0] = _requests_in(data, state[0])
        if count:
            self.answer(sock, count)


def _send_or_close(sock: socket.socket, count: int) -> None:
    """Answer ``count`` requests, or close at end of stream (count 0).

    A hello response is ~100 bytes: the kernel always takes it whole from a
    client that reads (wrk, curl), so a floor needs no write buffering. A
    send that would block, or fails, shuts the socket down instead of closing
    it: the reactor, which still watches it, then reads end of stream,
    unregisters it and only then has it closed.
    """
    if not count:
        sock.close()
        return
    try:
        sock.sendall(CANNED * count)
    except OSError:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def floor_selectors(port: int) -> None:
    """A selector reactor that answers on its own thread: the least any reactor design costs."""
    _Reactor(port, _send_or_close).run()


def floor_reactor_pool(port: int, workers: int = 4) -> None:
    """hybrid's shape without HTTP: the reactor reads, a pool thread sends.

    Handing each request from the reactor thread to a worker (a queue put, a
    thread woken, the GIL changing hands) is what the design pays for letting
    handlers block; this floor includes it, so hybrid's distance from it is its
    own code. Four workers: on one core more only add GIL contention. Closing
    goes through the pool too, after the reactor has unregistered the socket
    (a send racing the close hits a closed socket object: EBADF, never
    another connection's reused descriptor).
    """
    import queue
    import threading

    jobs: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        while True:
            _send_or_close(*jobs.get())

    for _ in range(workers):
        threading.Thread(target=work, daemon=True).start()
    _Reactor(port, lambda sock, count: jobs.put((sock, count))).run()


FLOORS = {"floor-threads": floor_threads, "floor-selectors": floor_selectors,
          "floor-reactor-pool": floor_reactor_pool, "floor-asyncio": floor_asyncio, "floor-uvloop": floor_uvloop,
          "floor-trio": floor_trio}


def serve_stdlib(variant: str, port: int) -> None:
    server_class, handler_class = VARIANTS[variant]
    server = server_class(("127.0.0.1", port), handler_class)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def serve_stdlib_workload(host: str, port: int) -> None:
    """``ThreadingHTTPServer`` serving the harness's workload (``ASTRA_WORKLOAD``) on HOST:PORT.

    Stock, as ``stdlib`` is: ``experiments.apps.peer_workloads.WorkloadHandler`` (HTTP/1.1
    keep-alive, Nagle on) and socketserver's listen backlog of 5.
    """
    from .peer_workloads import WorkloadHandler

    server = QuietServer((host, port), WorkloadHandler)
    print(f"listening on http://{host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["stdlib-workload"]:  # python -m experiments.apps.peers stdlib-workload HOST PORT
        if len(sys.argv) != 4:
            sys.exit("usage: python -m experiments.apps.peers stdlib-workload HOST PORT")
        sys.exit(serve_stdlib_workload(sys.argv[2], int(sys.argv[3])))
    names = [*VARIANTS, *FLOORS]
    if len(sys.argv) != 3 or sys.argv[1] not in names:
        sys.exit(f"usage: python -m experiments.apps.peers {{{'|'.join(names)}}} PORT")
    if sys.argv[1] in FLOORS:
        FLOORS[sys.argv[1]](int(sys.argv[2]))
    else:
        serve_stdlib(sys.argv[1], int(sys.argv[2]))
