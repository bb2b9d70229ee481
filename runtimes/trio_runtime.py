"""trio: connections are tasks in trio's structured-concurrency world.

The driver is the shared one in ``_async/`` (anyio maps its task groups and
cancel scopes straight onto trio's nurseries and cancel scopes); this edge
only asks anyio for the trio backend.
"""

from __future__ import annotations

import trio

from ._async import AsyncRuntime

__all__ = ["TrioRuntime"]


class TrioRuntime(AsyncRuntime):
    name = "trio"
    backend = "trio"

    def thread_notifier(self):
        return trio.lowlevel.current_trio_token().run_sync_soon
