"""Micro-benchmarks behind the claims about switches and creation: threads against tasks.

``python -m experiments.benches.micro [pyperf options] [--only NAME,...] -o results/micro.json``
(``--fast`` for a quick run; ``python -m pyperf compare_to a.json b.json``
compares two runs).

Every benchmark is timed by pyperf, in fresh worker processes, and reports
seconds per *switch* (one hand-over of control from one thread or task to
another) or per *creation*:

- ``switch-threads-lock``: two OS threads hand a token back and forth through
  a pair of ``threading.Lock`` s used as binary semaphores. Each hand-over is
  a futex wake plus a GIL hand-off: what a Python thread switch really costs.
- ``switch-threads-socket``: the same through a socket pair, blocking
  ``recv`` on each side: the switch is caused by I/O readiness.
- ``switch-asyncio-event`` / ``switch-trio-event``: two tasks on one loop
  hand the token through events: a switch in userspace, no kernel involved.
- ``switch-asyncio-socket`` / ``switch-trio-socket``: two tasks ping-pong a
  byte through a socket pair: each switch waits for readiness from the
  kernel (epoll), the case where the seeds say threads and tasks converge.
- ``create-thread``: start and join a thread that does nothing;
  ``create-asyncio-task`` / ``create-trio-task``: spawn and await a task
  that does nothing (per spawn, in batches of 100).

Memory per idle thread or task is measured by :mod:`experiments.benches.idle_memory`,
not here: it needs a fresh process per measurement, not a timer.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pyperf
import trio

ROUND_TRIPS_PER_LOOP = 1  # a round trip is two switches


# -- OS threads -------------------------------------------------------------------

def switch_threads_lock(loops: int) -> float:
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()

    def partner() -> None:
        for _ in range(loops):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=partner)
    thread.start()
    started = time.perf_counter()
    for _ in range(loops):
        ping.release()
        pong.acquire()
    elapsed = time.perf_counter() - started
    thread.join()
    return elapsed / 2  # two switches per round trip


def switch_threads_socket(loops: int) -> float:
    a, b = socket.socketpair()

    def partner() -> None:
        for _ in range(loops):
            b.recv(1)
            b.send(b"x")

    thread = threading.Thread(target=partner)
    thread.start()
    started = time.perf_counter()
    for _ in range(loops):
        a.send(b"x")
        a.recv(1)
    elapsed = time.perf_counter() - started
    thread.join()
    a.close()
    b.close()
    return elapsed / 2


def create_thread(loops: int) -> float:
    def nothing() -> None:
        pass

    started = time.perf_counter()
    for _ in range(loops):
        thread = threading.Thread(target=nothing)
        thread.start()
        thread.join()
    return time.perf_counter() - started


# -- asyncio ------------------------------------------------------------------------

def switch_asyncio_event(loops: int) -> float:
    async def main() -> float:
        ping, pong = asyncio.Event(), asyncio.Event()

        async def partner() -> None:
            for _ in range(loops):
                await ping.wait()
                ping.clear()
                pong.set()

        task = asyncio.create_task(partner())
        await asyncio.sleep(0)
        started = time.perf_counter()
        for _ in range(loops):
            ping.set()
            await pong.wait()
            pong.clear()
        elapsed = time.perf_counter() - started
        await task
        return elapsed / 2

    return asyncio.run(main())


def switch_asyncio_socket(loops: int) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)

        async def partner() -> None:
            for _ in range(loops):
                await loop.sock_recv(b, 1)
                await loop.sock_sendall(b, b"x")

        task = asyncio.create_task(partner())
        started = time.perf_counter()
        for _ in range(loops):
            await loop.sock_sendall(a, b"x")
            await loop.sock_recv(a, 1)
        elapsed = time.perf_counter() - started
        await task
        a.close()
        b.close()
        return elapsed / 2

    return asyncio.run(main())


def create_asyncio_task(loops: int) -> float:
    async def nothing() -> None:
        pass

    async def main() -> float:
        started = time.perf_counter()
        for _ in range(loops // 100 or 1):
            await asyncio.gather(*(asyncio.create_task(nothing()) for _ in range(100)))
        return (time.perf_counter() - started) * loops / ((loops // 100 or 1) * 100)

    return asyncio.run(main())


# -- trio ---------------------------------------------------------------------------

def switch_trio_event(loops: int) -> float:
    async def main() -> float:
        # trio.Event cannot be cleared; a memory channel of size 0 is trio's
        # own hand-over primitive (send waits for the receiver).
        to_partner, partner_in = trio.open_memory_channel(0)
        to_main, main_in = trio.open_memory_channel(0)
        result = []

        async def partner() -> None:
            for _ in range(loops):
                await partner_in.receive()
                await to_main.send(None)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(partner)
            started = time.perf_counter()
            for _ in range(loops):
                await to_partner.send(None)
                await main_in.receive()
            result.append((time.perf_counter() - started) / 2)
        return result[0]

    return trio.run(main)


def switch_trio_socket(loops: int) -> float:
    async def main() -> float:
        a, b = trio.socket.socketpair()

        async def partner() -> None:
            for _ in range(loops):
                await b.recv(1)
                await b.send(b"x")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(partner)
            started = time.perf_counter()
            for _ in range(loops):
                await a.send(b"x")
                await a.recv(1)
            elapsed = time.perf_counter() - started
        a.close()
        b.close()
        return elapsed / 2

    return trio.run(main)


def create_trio_task(loops: int) -> float:
    async def nothing() -> None:
        pass

    async def main() -> float:
        started = time.perf_counter()
        batches = loops // 100 or 1
        for _ in range(batches):
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(nothing)
        return (time.perf_counter() - started) * loops / (batches * 100)

    return trio.run(main)


BENCHMARKS = {
    "switch-threads-lock": switch_threads_lock,
    "switch-threads-socket": switch_threads_socket,
    "switch-asyncio-event": switch_asyncio_event,
    "switch-asyncio-socket": switch_asyncio_socket,
    "switch-trio-event": switch_trio_event,
    "switch-trio-socket": switch_trio_socket,
    "create-thread": create_thread,
    "create-asyncio-task": create_asyncio_task,
    "create-trio-task": create_trio_task,
}


def _pass_only(cmd: list[str], args) -> None:
    """pyperf re-runs this module in worker processes: they must register the same benchmarks."""
    if args.only:
        cmd.extend(("--only", args.only))


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=_pass_only)
    runner.argparser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    args = runner.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmarks {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    runner.metadata["description"] = "astra claims: thread and task switch and creation costs"
    for name in names:
        runner.bench_time_func(name, BENCHMARKS[name])


if __name__ == "__main__":
    main()
