"""The elastic worker pool: threads for blocking handlers, and a bounded queue in front.

``hybrid`` and ``pinned`` run their handlers (or, for ``pinned``, whole
connections) on it, and so do the event-loop runtimes when a handler is a
plain blocking ``def``; the thread runtimes also give each HTTP/2 connection
a small one for its streams.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .common import logger

__all__ = ["WorkerPool"]

Job = Callable[[], None]


class _Parked:
    """An idle worker, asleep on a lock of its own until it is handed a job (or told to exit: job None)."""

    __slots__ = ("wake", "job")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()  # held: the worker's next acquire sleeps until submit releases it
        self.job: Job | None = None


class WorkerPool:
    """An elastic pool of daemon threads with a bounded queue.

    It starts empty. A job goes to an idle worker if there is one, else to a
    new worker while fewer than ``max_workers`` are alive, else into the
    queue; otherwise ``submit`` returns False and the caller refuses the work
    (503, or REFUSED_STREAM). A worker idle for ``keep_alive`` seconds exits.

    The queue sheds by *delay*, not length (the idea of CoDel): a job is
    refused when the oldest job waiting has waited longer than ``max_wait``
    seconds, since then a new one would wait longer still. A burst of
    thousands of quick requests queues and is served in milliseconds; a pool
    that is truly behind refuses within ``max_wait``. ``max_queued`` stays as
    a hard cap on the queue's memory.

    Idle workers wait in a stack, each on a lock of its own, and a job goes
    to the one that went idle *last*. Under light load the same few workers
    take every job while the rest stay asleep long enough to exit: with one
    shared queue any sleeper could be woken, so a trickle of requests would
    keep a pool sized for the last burst alive forever.

    A job submitted with ``waits_on_client=True`` is one whose handler will
    wait for bytes the client has yet to send (a large upload). At most
    ``max_waiting_on_clients`` workers run such jobs; more wait in a line of
    their own, shed by the same delay rule. Slow uploaders can then take at
    most that share of the pool, and everyone else is served by the rest.
    """

    def __init__(self, max_workers: int, keep_alive: float, max_queued: int, max_wait: float = 1.0,
                 max_waiting_on_clients: int = 0) -> None:
        self.max_workers = max(1, max_workers)
        self.keep_alive = keep_alive
        self.max_queued = max_queued
        self.max_wait = max_wait
        #: 0: half the pool (at least one worker).
        self.max_waiting_on_clients = max_waiting_on_clients or max(1, self.max_workers // 2)
        self._lock = threading.Lock()
        self._queue: deque[tuple[float, Job]] = deque()  # (when submitted, job), oldest first
        self._parked: list[_Parked] = []  # idle workers, the most recently idle last
        self._held: deque[tuple[float, Job]] = deque()  # client-bound jobs waiting for a share
        self.waiting_on_clients = 0  # client-bound jobs placed (running or queued)
        self.alive = 0
        self.peak = 0
        self.started = 0
        self.shed = 0  # jobs refused: the queue was too long, or its oldest job too old
        self._closed = False

    def submit(self, job: Job, waits_on_client: bool = False) -> bool:
        with self._lock:
            if self._closed:
                return False
            if waits_on_client:
                if self.waiting_on_clients >= self.max_waiting_on_clients:
                    if self._too_late(self._held):
                        return False
                    self._held.append((time.monotonic(), job))
                    return True
                if not self._parked and self.alive >= self.max_workers and self._too_late(self._queue):
                    return False
                self.waiting_on_clients += 1
                job = self._client_bound(job)
            elif not self._parked and self.alive >= self.max_workers and self._too_late(self._queue):
                return False
            spawn = self._place(job)
        if spawn:
            self._spawn(job)
        return True

    def _too_late(self, line: deque[tuple[float, Job]]) -> bool:
        """Lock held: shed a newcomer to ``line``? (It is full, or its oldest has waited too long.)"""
        if len(line) >= self.max_queued or (line and time.monotonic() - line[0][0] > self.max_wait):
            self.shed += 1
            return True
        return False

    def _place(self, job: Job) -> bool:
        """Lock held: hand ``job`` to the last worker to go idle, or queue it; True if a worker must be started for it."""
        if self._parked:
            worker = self._parked.pop()
            worker.job = job
            worker.wake.release()
            return False
        if self.alive < self.max_workers:
            self.alive += 1
            self.started += 1
            self.peak = max(self.peak, self.alive)
            return True
        self._queue.append((time.monotonic(), job))
        return False

    def _spawn(self, job: Job) -> None:
        worker = _Parked()
        worker.job = job  # not in the Thread's args, which it keeps until it exits
        try:
            threading.Thread(target=self._work_loop, args=(worker,), name="astra-worker", daemon=True).start()
        except RuntimeError:  # no more threads from the OS: the job waits for a live worker
            with self._lock:
                self.alive -= 1
                self._queue.appendleft((time.monotonic(), job))
            logger.error("could not start a worker thread (%d alive)", self.alive)

    def _client_bound(self, job: Job) -> Job:
        def run() -> None:
            try:
                job()
            finally:
                self._client_bound_done()
        return run

    def _client_bound_done(self) -> None:
        """A client-bound job ended: its share passes to the next one held back, if any."""
        with self._lock:
            if not self._held:
                self.waiting_on_clients -= 1
                return
            job = self._client_bound(self._held.popleft()[1])
            spawn = self._place(job)
        if spawn:
            self._spawn(job)

    def _work_loop(self, me: _Parked) -> None:
        job, me.job = me.job, None
        while job is not None:
            try:
                job()
            except BaseException:
                logger.exception("worker job failed")
            job = None  # not kept while asleep: a job may hold a request, its response, megabytes
            job = self._next_job(me)
        with self._lock:
            self.alive -= 1

    def _next_job(self, me: _Parked) -> Job | None:
        """The next job for this worker: from the queue, or handed over while it sleeps; None to exit."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()[1]
            if self._closed:
                return None
            self._parked.append(me)
        if not me.wake.acquire(timeout=self.keep_alive):
            with self._lock:
                if me in self._parked:  # nobody handed it a job: idle too long, exit
                    self._parked.remove(me)
                    return None
            me.wake.acquire()  # a job was handed over as the wait ended: it is released already
        job, me.job = me.job, None
        return job

    def close(self) -> None:
        """Idle workers exit now; busy ones after the queue is empty."""
        with self._lock:
            self._closed = True
            parked, self._parked = self._parked, []
        for worker in parked:
            worker.wake.release()  # with no job: exit

    @property
    def idle(self) -> int:
        return len(self._parked)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "workers_alive": self.alive,
                "workers_idle": len(self._parked),
                "workers_peak": self.peak,
                "workers_started": self.started,
                "queue_depth": len(self._queue),
                "queue_shed": self.shed,
                "waiting_on_clients": self.waiting_on_clients,
                "held_for_clients": len(self._held),
            }
