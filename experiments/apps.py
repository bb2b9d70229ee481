"""Handlers the experiments and benchmarks serve (``python -m astra experiments.apps:hello``)."""

from astra import Response


def hello(request):
    return Response("Hello World!")
