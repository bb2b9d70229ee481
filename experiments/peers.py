"""Hello-world apps for the peer servers astra is benchmarked against.

* ``asgi_hello``: for hypercorn and uvicorn (``experiments.peers:asgi_hello``).
* ``wsgi_hello``: for waitress (``experiments.peers:wsgi_hello``).
* ``python -m experiments.peers stdlib PORT``: the standard library's
  ``ThreadingHTTPServer`` on 127.0.0.1:PORT, as shipped (keep-alive on);
  ``stdlib-tuned`` is the same with Nagle off and a real listen backlog.

Every app answers any request with ``200 Hello World!`` (text/plain, with a
Content-Length), as ``experiments.apps:hello`` does on astra.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"Hello World!"
_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(BODY)).encode())]


async def asgi_hello(scope, receive, send):
    if scope["type"] == "lifespan":  # answer it, so servers do not warn about it
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
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

    def _hello(self, with_body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if with_body:
            self.wfile.write(BODY)

    def do_GET(self) -> None:
        self._hello(True)

    def do_HEAD(self) -> None:
        self._hello(False)

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


def serve_stdlib(variant: str, port: int) -> None:
    server_class, handler_class = VARIANTS[variant]
    server = server_class(("127.0.0.1", port), handler_class)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: python -m experiments.peers {{{'|'.join(VARIANTS)}}} PORT")
    serve_stdlib(sys.argv[1], int(sys.argv[2]))
