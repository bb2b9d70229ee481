"""The HTTP/2 benchmark: hello world over h2c, astra's runtimes against hypercorn.

``python -m experiments.benches.h2 [--loads 100x10,10x10] [--duration 5] [--repeat 1]``

Each server is started fresh, pinned to CPU 0, and driven by ``h2load -t1
-cC -mM`` (C connections, M concurrent streams on each) pinned to CPU 1,
after a discarded warm-up at the same load. Peers are measured in the same
run: hypercorn with its asyncio and trio workers (both speak h2c with prior
knowledge). astra's runtimes serve the plain ``def`` hello; the event-loop
runtimes also serve the ``async def`` one, which is the fair comparison
with an ASGI server.

The protocol's own cost is measured in-process, no sockets: pre-encoded
client frames for ``REQUESTS`` requests (10 streams at a time) are fed to
``protocols.HTTP2Connection``, which answers each, and the CPU time per
request is reported next to the same loop on a bare ``h2`` server connection
sending the same response fields (the difference is this project's layer).
That is the ceiling: one core cannot serve HTTP/2 faster than that, whatever
the runtime does. Results: ``results/h2_bench-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import h2.config
import h2.connection
import h2.events

from astra import available_runtimes
from astra.registry import load_runtime
from protocols import ConnectionInfo, HTTP2Connection, Response
from protocols._dates import http_date

from ..harness.servers import ServerProcess, cpu_us
from ..load.tools import parse_h2load
from .hello import RESULTS_DIR, version

SERVER_CPU, CLIENT_CPU = 0, 1
REQUESTS = 20_000
PEERS = ("hypercorn", "hypercorn-trio")


def servers(runtimes: list[str]) -> dict[str, list[str]]:
    py, bind = sys.executable, "127.0.0.1:{port}"
    table = {}
    for name in runtimes:
        base = [py, "-m", "astra", "--bind", bind, "--runtime", name]
        table[f"astra-{name}"] = base[:3] + ["experiments.apps:hello"] + base[3:]
        if load_runtime(name).supports_async:
            table[f"astra-{name}-async"] = base[:3] + ["experiments.apps:hello_async"] + base[3:]
    for worker, label in (("asyncio", "hypercorn"), ("trio", "hypercorn-trio")):
        table[label] = [py, "-m", "hypercorn", "experiments.apps.peers:asgi_hello", "-b", bind, "-k", worker]
    return table


def h2load(url: str, conns: int, streams: int, seconds: float, warmup: float) -> dict:
    cmd = ["taskset", "-c", str(CLIENT_CPU), "h2load", "-t1", f"-c{conns}", f"-m{streams}",
           f"-D{seconds:g}", f"--warm-up-time={warmup:g}", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 60)
    result = parse_h2load(out.stdout)
    result["command"] = " ".join(cmd[3:])
    return result


def measure(name: str, argv: list[str], loads: list[tuple[int, int]], args) -> list[dict]:
    rows = []
    with tempfile.TemporaryFile("w+") as log:
        server = ServerProcess(argv, cpus=[SERVER_CPU], log=log)
        try:
            server.wait_ready()
            for conns, streams in loads:
                for round_ in range(args.repeat):
                    h2load(server.url, conns, streams, 1, 0)  # warm-up, discarded
                    time.sleep(args.pause)
                    before = cpu_us(server.proc.pid)
                    r = h2load(server.url, conns, streams, args.duration, 1)
                    cpu = cpu_us(server.proc.pid) - before
                    r.update(server=name, conns=conns, streams=streams, round=round_,
                             cpu_us_per_request=cpu / r["succeeded"] if r["succeeded"] else None)
                    rows.append(r)
                    print(f"  -c{conns} -m{streams}: {r['requests_per_s']:,.0f} req/s, "
                          f"{r['failed'] + r['errored'] + r['timeout']} failed/errored/timed out, "
                          f"protocol {r['protocol']}", flush=True)
        except Exception as exc:  # one failed server must not sink the comparison
            print(f"  ! {name}: {exc}")
        finally:
            how = server.stop()
            log.seek(0)
            noteworthy = [line for line in log.read().splitlines()
                          if re.search(r"error|traceback|exception", line, re.I)]
    if noteworthy:
        print(f"  log: {len(noteworthy)} error lines, e.g. {noteworthy[0][:160]!r}")
    for r in rows:
        r["server_stop"] = how
    return rows


# The protocol's own cost ----------------------------------------------------------

def client_frames(requests: int, batch: int = 10) -> tuple[bytes, list[bytes]]:
    """The preface, then one chunk of client frames per batch of GET requests."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.increment_flow_control_window(2**31 - 1 - 65535)  # room for every response
    preface = client.data_to_send()
    chunks = []
    headers = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"127.0.0.1")]
    stream_id = 1
    for _ in range(requests // batch):
        for _ in range(batch):
            client.send_headers(stream_id, headers, end_stream=True)
            stream_id += 2
        chunks.append(client.data_to_send())
        # The server's responses close these streams on its side; the client's
        # view does not matter for what the server is fed.
        for sid in range(stream_id - 2 * batch, stream_id, 2):
            client.streams.pop(sid, None)
    return preface, chunks


def protocol_cost(requests: int = REQUESTS) -> dict:
    preface, chunks = client_frames(requests)
    info = ConnectionInfo(("127.0.0.1", 1), ("127.0.0.1", 2))

    def ours() -> None:
        conn = HTTP2Connection(info)
        conn.receive_data(preface)
        conn.data_to_send()
        for chunk in chunks:
            conn.receive_data(chunk)
            for event in conn.events():
                if type(event).__name__ == "RequestReceived":
                    response = Response("Hello World!")
                    conn.send_response(event.stream_id, response)
                    conn.send_data(event.stream_id, response.body.data)
                    conn.end_stream(event.stream_id)
            conn.data_to_send()

    def bare() -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        conn.receive_data(preface)
        conn.data_to_send()
        for chunk in chunks:
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.RequestReceived):
                    conn.send_headers(event.stream_id, [  # the same fields astra sends
                        (b":status", b"200"), (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", b"12"), (b"date", http_date().encode()), (b"server", b"astra")])
                    conn.send_data(event.stream_id, b"Hello World!", end_stream=True)
            conn.data_to_send()

    result = {}
    for name, run in (("astra_http2_us", ours), ("bare_h2_us", bare)):
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            run()
            best = min(best, time.process_time() - started)
        result[name] = best / (len(chunks) * 10) * 1e6
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loads", default="100x10,10x10", help="CONNSxSTREAMS, comma-separated")
    p.add_argument("--runtimes", default=",".join(available_runtimes()))
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--pause", type=float, default=1.0)
    args = p.parse_args(argv)
    if shutil.which("h2load") is None or shutil.which("taskset") is None:
        print("h2load (Debian's nghttp2-client) and taskset are needed: `make tools`", file=sys.stderr)
        return 2
    loads = [tuple(int(x) for x in load.split("x")) for load in args.loads.split(",")]
    table = servers([r for r in args.runtimes.split(",") if r])
    wanted = [n for n in table if n.startswith("astra-")] + [n for n in args.peers.split(",") if n]
    print("protocol cost, in-process (best of 3):", flush=True)
    cost = protocol_cost()
    print(f"  astra's HTTP2Connection {cost['astra_http2_us']:.1f} us/request "
          f"(ceiling {1e6 / cost['astra_http2_us']:,.0f} req/s per core); "
          f"bare h2 {cost['bare_h2_us']:.1f} us/request")
    rows = []
    for name in wanted:
        print(f"{name}:", flush=True)
        rows += measure(name, table[name], loads, args)
    print(f"\n{'server':<22}{'load':>10}{'req/s':>10}{'failed':>8}{'cpu-us/req':>12}{'of ceiling':>12}")
    for r in rows:
        cpu = r["cpu_us_per_request"]
        load = f"-c{r['conns']} -m{r['streams']}"
        print(f"{r['server']:<22}{load:>10}{r['requests_per_s']:>10,.0f}"
              f"{r['failed'] + r['errored'] + r['timeout']:>8}{cpu or 0:>12.1f}"
              f"{cost['astra_http2_us'] / cpu if cpu else 0:>12.0%}")
    ratios = {}
    for r in rows:
        for peer in ("hypercorn", "hypercorn-trio"):
            theirs = [x for x in rows if x["server"] == peer and (x["conns"], x["streams"]) == (r["conns"], r["streams"])]
            if r["server"].startswith("astra-") and theirs and theirs[0]["requests_per_s"]:
                ratios[f"{r['server']} / {peer} -c{r['conns']} -m{r['streams']}"] = (
                    r["requests_per_s"] / theirs[0]["requests_per_s"])
    print()
    for key, value in ratios.items():
        print(f"  {key}: {value:.2f}x")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"h2_bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    h2load_version = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    out.write_text(json.dumps({
        "when": datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
        "python": sys.version.split()[0], "h2": version("h2"), "hypercorn": version("hypercorn"),
        "h2load": h2load_version, "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU,
        "protocol_cost": cost, "runs": rows, "ratios": ratios,
    }, indent=1))
    print(f"results: {out.relative_to(RESULTS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
