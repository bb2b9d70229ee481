"""Normal visitors beside the hostile ones: a steady keep-alive load that measures latency.

``python -m experiments.hostile.visitors --port P [--protocol h1|h2] [--seconds 60] [--rate 50]
[--connections 2] [--interval 5]`` prints one JSON line per interval (requests done,
errors by kind, p50 / p99 / max latency in ms) and a last ``{"summary": ...}`` line.

Why not wrk: a soak needs latency *per interval* (to see a server give way
while an attack runs, and recover after), over HTTP/2 too, and wrk reports
once at the end, over HTTP/1.1 only. Why a fixed rate: a closed loop that
waits for each answer sends nothing while the server stalls, so a 10 s stall
would count as one slow request (coordinated omission). Here each
connection has a schedule, ``rate / connections`` requests a second, and a
request's latency runs from when it was *due*, as wrk2 does: a stall shows
as every request it delayed (``p50_ms``, ``p99_ms``). Since each connection
is serial, a server slower than the schedule also builds a backlog on the
client's side, so the *service* time (request sent to answer read,
``service_p50_ms``, ``service_p99_ms``) is reported beside it. It runs in its own process (the soak pins it
beside the attackers, at a higher priority) so that the attackers' Python
does not add to its latencies through the GIL.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from .clients import final_status

TIMEOUT = 5.0  # a request not answered in this time is an error ("timeout"), and its connection is dropped


class H1Visitor:
    """One keep-alive HTTP/1.1 connection, opened again whenever it fails."""

    def __init__(self, host: str, port: int) -> None:
        self.address, self.sock = (host, port), None

    def get(self, path: str = "/") -> int:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: visitor\r\n\r\n" % path.encode())
        buf = bytearray()
        while (end := buf.find(b"\r\n\r\n")) < 0 or final_status(buf) is None:
            buf += self._recv()
        head = bytes(buf[:end]).lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in head else 0
        while len(buf) < end + 4 + length:
            buf += self._recv()
        if b"connection: close" in head:
            self.close()
        return final_status(buf) or 0

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by server")
        return data

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class H2Visitor:
    """One prior-knowledge HTTP/2 connection (h2's client side), one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.address, self.sock, self.conn = (host, port), None, None

    def _open(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path: str = "/") -> int:
        if self.sock is None:
            self._open()
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [(b":method", b"GET"), (b":path", path.encode()), (b":scheme", b"http"),
                                        (b":authority", b"visitor")], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        status = 0
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by server")
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    raise ConnectionError(f"stream reset ({event.error_code})")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise ConnectionError(f"goaway ({event.error_code})")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    self.sock.sendall(self.conn.data_to_send())
                    return status
            self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock, self.conn = None, None


class Load:
    """``connections`` visitors, each on its own schedule.

    Results are (done_at, latency from due, service time, error or None), in seconds.
    """

    def __init__(self, host: str, port: int, protocol: str, rate: float, connections: int) -> None:
        kind = H2Visitor if protocol == "h2" else H1Visitor
        self.visitors = [kind(host, port) for _ in range(connections)]
        self.period = connections / rate
        self.results: list[tuple[float, float, float, str | None]] = []
        self.lock = threading.Lock()

    def run(self, seconds: float) -> None:
        start = time.monotonic()
        threads = [threading.Thread(target=self._visit, args=(v, start + i * self.period / len(self.visitors),
                                                                start + seconds), daemon=True)
                   for i, v in enumerate(self.visitors)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _visit(self, visitor: H1Visitor | H2Visitor, due: float, until: float) -> None:
        while due < until:
            time.sleep(max(0.0, due - time.monotonic()))
            sent, error = time.monotonic(), None
            try:
                status = visitor.get()
                if status != 200:
                    error = f"status {status}"
            except TimeoutError:
                error = "timeout"
            except (OSError, h2.exceptions.ProtocolError) as exc:
                error = type(exc).__name__ if not isinstance(exc, ConnectionError) or not exc.args else str(exc.args[0])
            if error is not None:
                visitor.close()
            done = time.monotonic()
            with self.lock:
                self.results.append((done, done - due, done - sent, error))
            due += self.period
        visitor.close()

    def take(self) -> list[tuple[float, float, float, str | None]]:
        with self.lock:
            taken, self.results = self.results, []
        return taken


def stats(results: list[tuple[float, float, float, str | None]]) -> dict:
    """Requests, errors by kind, and percentiles (nearest rank, ms) of the answered ones: from due, and service."""
    answered = [(due, service) for _, due, service, err in results if err is None]
    errors: dict[str, int] = {}
    for *_, err in results:
        if err is not None:
            errors[err] = errors.get(err, 0) + 1

    def pct(values: list[float], q: float) -> float | None:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2) if values else None
    due, service = sorted(d for d, _ in answered), sorted(s for _, s in answered)
    return {"requests": len(results), "ok": len(answered), "errors": errors, "p50_ms": pct(due, 0.50),
            "p99_ms": pct(due, 0.99), "max_ms": pct(due, 1.0), "service_p50_ms": pct(service, 0.50),
            "service_p99_ms": pct(service, 0.99)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--protocol", choices=["h1", "h2"], default="h1")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=50.0, help="requests per second, over all connections")
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--interval", type=float, default=5.0, help="seconds per reported interval")
    args = p.parse_args(argv)
    load = Load(args.host, args.port, args.protocol, args.rate, args.connections)
    runner = threading.Thread(target=load.run, args=(args.seconds,), daemon=True)
    runner.start()
    everything = []
    while runner.is_alive():
        runner.join(args.interval)
        taken = load.take()
        everything += taken
        print(json.dumps({"time": time.time(), **stats(taken)}), flush=True)
    print(json.dumps({"summary": stats(everything)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
