"""The runtimes astra knows, by name.

Adding a runtime means adding its module under ``runtimes/`` and one line
here; the CLI's ``--runtime`` choices and the test suite's parametrization
both read this table.
"""

from __future__ import annotations

import importlib

__all__ = ["RUNTIMES", "available_runtimes", "load_runtime"]

#: name -> "module:Class"
RUNTIMES: dict[str, str] = {
    "threaded": "runtimes.threaded:ThreadedRuntime",
    "pinned": "runtimes.pinned:PinnedRuntime",
    "hybrid": "runtimes.hybrid:HybridRuntime",
    "asyncio": "runtimes.asyncio_runtime:AsyncioRuntime",
    "trio": "runtimes.trio_runtime:TrioRuntime",
}

DEFAULT_RUNTIME = "threaded"


def available_runtimes() -> list[str]:
    return list(RUNTIMES)


def load_runtime(name: str) -> type:
    try:
        target = RUNTIMES[name]
    except KeyError:
        raise ValueError(
            f"unknown runtime {name!r}; choose one of: {', '.join(RUNTIMES)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
