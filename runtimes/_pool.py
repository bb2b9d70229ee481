"""The elastic worker pool: threads for blocking handlers, and a bounded queue in front.

``hybrid`` and ``pinned`` run their handlers (or, for ``pinned``, whole
connections) on it, and so do the event-loop runtimes when a handler is a
plain blocking ``def``; the thread runtimes also give each HTTP/2 connection
a small one for its streams.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from .common import logger

__all__ = ["WorkerPool"]


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

    Jobs travel through a ``queue.SimpleQueue`` (a C semaphore: handing a job
    to a sleeping worker is one futex wake), while the bookkeeping that
    decides where a job goes sits under a plain lock. ``threading.Condition``
    would do both, in Python, at several times the cost per request.
    """

    def __init__(self, max_workers: int, keep_alive: float, max_queued: int, max_wait: float = 1.0) -> None:
        self.max_workers = max(1, max_workers)
        self.keep_alive = keep_alive
        self.max_queued = max_queued
        self.max_wait = max_wait
        self._queued_at: deque[float] = deque()  # when each job not yet taken was submitted, oldest first
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.pending = 0  # submitted, not yet taken by a worker
        self.alive = 0
        self.idle = 0  # blocked in get(), waiting for a job
        self.peak = 0
        self.started = 0
        self.shed = 0  # jobs refused: the queue was too long, or its oldest job too old
        self._closed = False

    def submit(self, job: Callable[[], None]) -> bool:
        with self._lock:
            if self._closed:
                return False
            spawn = False
            if self.idle <= self.pending:  # nobody free to take it at once
                if self.alive < self.max_workers:
                    spawn = True
                    self.alive += 1
                    self.started += 1
                    self.peak = max(self.peak, self.alive)
                elif self.pending - self.idle >= self.max_queued or (
                        self._queued_at and time.monotonic() - self._queued_at[0] > self.max_wait):
                    self.shed += 1
                    return False
            self.pending += 1
            self._queued_at.append(time.monotonic())
        self._jobs.put(job)
        if spawn:
            try:
                threading.Thread(target=self._work_loop, name="astra-worker", daemon=True).start()
            except RuntimeError:  # no more threads from the OS: the job waits for a live one
                with self._lock:
                    self.alive -= 1
                logger.error("could not start a worker thread (%d alive)", self.alive)
        return True

    def _work_loop(self) -> None:
        jobs = self._jobs
        while True:
            with self._lock:
                self.idle += 1
            try:
                job = jobs.get(timeout=self.keep_alive)
            except queue.Empty:
                job = None
            with self._lock:
                self.idle -= 1
                if job is None:
                    if self.pending and not self._closed:
                        continue  # a job was promised to an idle worker: stay for it
                    self.alive -= 1
                    return
                self.pending -= 1
                self._queued_at.popleft()
            try:
                job()
            except BaseException:
                logger.exception("worker job failed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            alive = self.alive
        for _ in range(alive):
            self._jobs.put(None)  # wakes each worker; finding no job, it exits

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "workers_alive": self.alive,
                "workers_idle": self.idle,
                "workers_peak": self.peak,
                "workers_started": self.started,
                "queue_depth": max(0, self.pending - self.idle),
                "queue_shed": self.shed,
            }
