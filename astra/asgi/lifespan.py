"""The ASGI lifespan protocol: the app's startup before the server accepts, its shutdown after it drains.

The app is called once with a ``lifespan`` scope, in a task of its own for
the server's whole life. Its ``receive()`` gives ``lifespan.startup``, then
waits until the server has drained and gives ``lifespan.shutdown``; the app
answers each with ``.complete`` or ``.failed``. The scope's ``state`` dict
is the app's to fill at startup; every request's scope gets a shallow copy
of it (the lifespan spec's "state" extension).

An app that does not speak the protocol usually says so by raising at once
(``assert scope["type"] == "http"``) or by returning. With
:attr:`LifespanMode.AUTO` that is taken as "not supported": logged at debug
level, and the server carries on without it. A startup the app reports as
failed always stops the server from starting (:class:`LifespanFailed`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import anyio

from runtimes.common import logger

__all__ = ["AppLifespan", "LifespanFailed", "LifespanMode"]

Message = dict[str, Any]


class LifespanMode(StrEnum):
    """Whether the app's lifespan protocol runs (``ASGIHandler(lifespan=...)``)."""

    AUTO = "auto"  #: run it; an app that raises or returns before answering startup does not support it
    ON = "on"  #: run it; an app that does not answer startup stops the server from starting
    OFF = "off"  #: never call the app with a lifespan scope


class LifespanFailed(RuntimeError):
    """The app's lifespan startup failed: the server does not start."""


class AppLifespan:
    """One run of the app's lifespan protocol: :meth:`run` in a task, :meth:`startup` and :meth:`shutdown` beside it."""

    def __init__(self, app: Any, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.startup_given = False  # receive() gives startup first, then (once asked) shutdown
        self.shutdown_asked = False
        self.answers: dict[str, Message] = {}  # "lifespan.startup.complete" and the like, as sent
        self.done = False
        self.error: BaseException | None = None
        self._changed = anyio.Event()

    def _change(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait(self, answered: tuple[str, str]) -> Message | None:
        """The app's answer among ``answered`` (None: it returned or raised without one)."""
        while not any(kind in self.answers for kind in answered):
            if self.done:
                return None
            await self._changed.wait()
        return next(self.answers[kind] for kind in answered if kind in self.answers)

    # The app's task -------------------------------------------------------------------

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # SystemExit too: the app's lifespan must not end the server
            self.error = exc
        finally:
            self.done = True
            self._change()

    async def receive(self) -> Message:
        if not self.startup_given:
            self.startup_given = True
            return {"type": "lifespan.startup"}
        while not self.shutdown_asked:
            await self._changed.wait()
        return {"type": "lifespan.shutdown"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind not in ("lifespan.startup.complete", "lifespan.startup.failed",
                        "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise ValueError(f"unexpected ASGI message {kind!r} on a lifespan connection")
        self.answers[kind] = message
        self._change()

    # The server's side -----------------------------------------------------------------

    async def startup(self, required: bool) -> bool:
        """Run the app's startup; True if it took part. Raises LifespanFailed for a failed one."""
        answer = await self._wait(("lifespan.startup.complete", "lifespan.startup.failed"))
        if answer is not None and answer["type"] == "lifespan.startup.complete":
            return True
        if answer is not None:
            raise LifespanFailed(f"the ASGI app's startup failed: {answer.get('message') or 'no reason given'}")
        why = f"it raised {self.error!r}" if self.error is not None else "it returned without answering"
        if required:
            raise LifespanFailed(f"the ASGI app did not complete its lifespan startup: {why}") from self.error
        logger.debug("the ASGI app does not support the lifespan protocol (%s); going on without it", why)
        return False

    async def shutdown(self, timeout: float) -> None:
        """Ask the app to shut down and wait for its answer, ``timeout`` seconds at most."""
        if self.done:
            if self.error is not None:
                logger.error("the ASGI app's lifespan failed while the server ran", exc_info=self.error)
            return
        self.shutdown_asked = True
        self._change()
        answer = None
        with anyio.move_on_after(timeout):
            answer = await self._wait(("lifespan.shutdown.complete", "lifespan.shutdown.failed"))
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            logger.error("the ASGI app's shutdown failed: %s", answer.get("message") or "no reason given")
        elif answer is None and self.error is not None:
            logger.error("the ASGI app's lifespan shutdown failed", exc_info=self.error)
        elif answer is None and not self.done:
            logger.warning("the ASGI app's lifespan shutdown took longer than %s s; abandoned", timeout)
