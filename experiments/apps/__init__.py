"""The handlers experiments serve: each workload once, as a plain blocking function,
and as an ``async def`` where its work can be awaited.

``python -m astra experiments.apps:hello`` serves one directly. The
workloads (see ``experiments.harness.workloads``) follow the seed documents:

- ``hello``: the hello world of the seeds' README.
- ``cpu``: the seed blog's simulated template work: format a string 100
  times, then serialize a small address record as JSON. Pure CPU: there is
  nothing to await, so the event-loop runtimes run its blocking form on their
  worker pool.
- ``sleep``: the handler blocks for ``ASTRA_SLEEP_MS`` milliseconds (10 by
  default), the seeds' "putting the worker thread to sleep"; its async form
  awaits the same time.
- ``file``: read a small ``index.html`` from disk on every request, as the
  seeds' second example does.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio

from astra import Response

SLEEP_SECONDS = float(os.environ.get("ASTRA_SLEEP_MS", "10")) / 1000
INDEX_HTML = Path(os.environ.get("ASTRA_INDEX_HTML", Path(__file__).with_name("index.html")))


def hello(request):
    return Response("Hello World!")


async def hello_async(request):
    return Response("Hello World!")


def cpu(request):
    value = "X"
    for x in range(100):
        value = f"Value: {x}"
    address = {"street": "10 Downing Street", "city": value}
    return Response(json.dumps(address), content_type="application/json")


def sleep(request):
    time.sleep(SLEEP_SECONDS)
    return Response("Slept")


async def sleep_async(request):
    await anyio.sleep(SLEEP_SECONDS)
    return Response("Slept")


def file(request):
    return Response(INDEX_HTML.read_text(), content_type="text/html")


async def file_async(request):
    # anyio.Path reads on a worker thread: the loop never waits on the disk.
    return Response(await anyio.Path(INDEX_HTML).read_text(), content_type="text/html")
