"""How long a thread may hold the GIL while others wait, for a runtime with thousands of threads.

CPython hands the GIL over in two ways. A thread that waits in the kernel
(``recv``, ``send``, ``accept``) lets go of it at once. A thread that wants
it back waits on a condition variable with a timeout of
:func:`sys.getswitchinterval` (5 ms), and each time that timeout passes it
wakes up, and asks the holder to let go if no hand-over has happened
meanwhile. Every waiter keeps its own timer. With a thread per connection and
N of them wanting the GIL, that is N / 0.005 wake-ups a second that do no
work: at 1,000 busy connections 200,000 a second, enough to fill a core.
Measured here (threaded, hello world, 1,000 connections, one core): 2,400
req/s and wrk timeouts at 5 ms, 12,000 req/s at 50 ms.

So the thread-per-connection runtime stretches the interval with its
threads: ``PER_THREAD`` seconds each (never below CPython's own), which
keeps those wake-ups near 1 / PER_THREAD = 20,000 a second whatever the
count. The price is the one the interval exists for: a handler that
computes without pausing keeps the others waiting longer before it is made
to let go, at most ``LONGEST`` seconds. Past a hundred threads, a request
already waits behind that many others, so the longer slice costs it little.

A switch interval given in :class:`~.common.Config` is kept as it is. On a
free-threaded build with the GIL off (PEP 703) there is no GIL to hand
over: the interval governs nothing, and is left alone.
"""

from __future__ import annotations

import sys

__all__ = ["SwitchInterval", "gil_enabled"]

#: Interval per thread that may want the GIL: 20,000 timer wake-ups a second at most.
PER_THREAD = 50e-6
#: The longest the interval is stretched to.
LONGEST = 0.5


class SwitchInterval:
    """The process's switch interval, fitted to a thread count unless one was configured.

    :meth:`restore` puts back the interval found at the start.
    """

    def __init__(self, configured: float | None) -> None:
        # Set by the server already (see astra.Server), or meaningless (no GIL).
        self.fixed = configured is not None or not gil_enabled()
        self.floor = self.current = sys.getswitchinterval()

    def fit(self, threads: int) -> None:
        """``threads`` may want the GIL from now on. Changed only when off by 2x, so rarely."""
        if self.fixed:
            return
        wanted = min(max(self.floor, threads * PER_THREAD), LONGEST)
        if wanted == self.floor or not self.current / 2 <= wanted <= self.current * 2:
            self._set(wanted)

    def restore(self) -> None:
        if not self.fixed:
            self._set(self.floor)

    def _set(self, seconds: float) -> None:
        if seconds != self.current:
            sys.setswitchinterval(seconds)
            self.current = seconds


def gil_enabled() -> bool:
    """Is the GIL on? Always on a standard build; on a free-threaded one unless an extension
    module switched it back on (or ``PYTHON_GIL=1``)."""
    return getattr(sys, "_is_gil_enabled", lambda: True)()
