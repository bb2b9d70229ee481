"""Handlers the experiments and benchmarks serve (``python -m astra experiments.apps:hello``)."""

from astra import Response


def hello(request):
    return Response("Hello World!")


async def hello_async(request):
    """The same answer from an ``async def`` handler (event-loop runtimes)."""
    return Response("Hello World!")
