"""Handlers for tests that run the server in a subprocess (the CLI)."""

import time

from astra import Response


def hello(request):
    return Response("Hello World!")


def slow(request):
    time.sleep(float(request.query_params.get("s", ["0.5"])[0]))
    return Response("done")


def boom(request):
    raise RuntimeError("boom")
