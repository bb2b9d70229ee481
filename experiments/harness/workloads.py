"""The workloads the harness runs, by name: each defined once, served on every runtime."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_WORKLOADS", "Workload", "WORKLOADS"]


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    blocking: str  # MODULE:ATTR of the plain handler
    awaitable: str | None = None  # MODULE:ATTR of the ``async def`` form, where the work can be awaited
    #: Runtimes the ``async def`` form works on (None: every runtime that awaits).
    awaitable_on: tuple[str, ...] | None = None

    def handler_for(self, runtime: str, runtime_awaits: bool, style: str = "auto") -> str:
        """Which form a runtime serves: ``auto`` awaits where it can."""
        if style == "sync" or not runtime_awaits or self.awaitable is None:
            return self.blocking
        if self.awaitable_on is not None and runtime not in self.awaitable_on:
            return self.blocking
        return self.awaitable


WORKLOADS = {
    w.name: w for w in (
        Workload("hello", "hello world (the seeds' README)", "experiments.apps:hello",
                 "experiments.apps:hello_async"),
        Workload("cpu", "100 string formats + JSON of an address (the seed blog's simulated work)",
                 "experiments.apps:cpu"),
        Workload("sleep", "the handler sleeps ASTRA_SLEEP_MS (10 ms): blocking I/O stand-in",
                 "experiments.apps:sleep", "experiments.apps:sleep_async"),
        Workload("file", "read a ~1 KiB index.html from disk per request (the seeds' example)",
                 "experiments.apps:file", "experiments.apps:file_async"),
        # psycopg's async API runs on asyncio only: trio serves the blocking
        # form on its worker pool (there is no trio-native PostgreSQL driver).
        Workload("db", "TechEmpower fortunes: query PostgreSQL, add a row, sort, render with Jinja2",
                 "experiments.apps.db:fortunes", "experiments.apps.db:fortunes_async", awaitable_on=("asyncio",)),
    )
}

#: What a sweep runs unless told otherwise: db needs a PostgreSQL server.
DEFAULT_WORKLOADS = ("hello", "cpu", "sleep", "file")
