"""asyncio: connections are tasks on an asyncio event loop (uvloop's, when installed).

Everything but the choice of loop is the shared driver in ``_async.py``;
``Config.loop`` picks ``"uvloop"``, plain ``"asyncio"``, or ``"auto"``
(uvloop if it can be imported, which is an option, not a requirement).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from ._async import AsyncRuntime

__all__ = ["AsyncioRuntime"]


class AsyncioRuntime(AsyncRuntime):
    name = "asyncio"
    backend = "asyncio"

    def backend_options(self) -> dict[str, Any]:
        loop = self.config.loop
        if loop == "auto":
            loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        if loop not in ("asyncio", "uvloop"):
            raise ValueError(f"unknown asyncio loop {loop!r}: choose auto, asyncio or uvloop")
        return {"use_uvloop": loop == "uvloop"}

    def thread_notifier(self):
        return asyncio.get_running_loop().call_soon_threadsafe
