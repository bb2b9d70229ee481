"""How fast is this machine right now? A fixed CPU task timed on each core.

``python -m experiments.harness.calibrate [--cpus 0,1] [--seconds 3]``

These machines are shared: a neighbour's load makes the same code 20-30%
slower from one hour to the next, and two runs of ``make claims`` then
disagree on absolute requests/s while agreeing on every ratio. Timing one
fixed task before and after a run tells the two causes apart: if the
calibration moved as much as the throughput did, the machine changed, not
the servers.

The task is what a server spends most of its time on here: the protocol
layer parsing a small HTTP/1.1 request and producing its response (no
sockets, no threads). Each core runs it in its own pinned process for
``--seconds``, in rounds of 1,000 requests; the median round is reported as
microseconds per request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: calibrate\r\nAccept: */*\r\n\r\n"


def task_us_per_request(seconds: float) -> float:
    """Median microseconds per request over rounds of 1,000, on the calling core."""
    from protocols import ConnectionInfo, RequestReceived, Response, server_connection

    rounds = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rounds) < 3:
        started = time.perf_counter()
        # HTTP/1.1 from the first byte: the per-request task, without the opening negotiation.
        conn = server_connection(ConnectionInfo(("127.0.0.1", 1), ("127.0.0.1", 2)), http="1")
        for _ in range(1000):
            conn.receive_data(REQUEST)
            for event in conn.events():
                if type(event) is RequestReceived:
                    response = Response("Hello World!")
                    conn.send_response(event.stream_id, response)
                    conn.send_data(event.stream_id, response.body.data)
                    conn.end_stream(event.stream_id)
            conn.data_to_send()
        rounds.append((time.perf_counter() - started) * 1e3)  # ms per 1,000 = us per request
    return round(statistics.median(rounds), 2)


def calibrate(cpus: list[int], seconds: float = 3.0) -> dict:
    """{cpu: us per request}, each measured in a process pinned to that CPU, one after another."""
    out = {}
    for cpu in cpus:
        done = subprocess.run(["taskset", "-c", str(cpu), sys.executable, "-m", "experiments.harness.calibrate",
                               "--here", "--seconds", str(seconds)], cwd=ROOT, capture_output=True, text=True,
                              timeout=seconds + 60)
        out[str(cpu)] = json.loads(done.stdout)["us_per_request"] if done.returncode == 0 else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.harness.calibrate", description=__doc__.splitlines()[0])
    p.add_argument("--cpus", default="0,1")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--here", action="store_true", help="(internal) measure in this process")
    args = p.parse_args(argv)
    if args.here:
        print(json.dumps({"us_per_request": task_us_per_request(args.seconds), "pid": os.getpid()}))
        return 0
    print(json.dumps(calibrate([int(c) for c in args.cpus.split(",")], args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
