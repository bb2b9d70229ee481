"""Memory per idle thread and per idle task, from RSS over thousands of them.

``python -m experiments.benches.idle_memory [--count 2000] [-o results/idle_memory.json]``

Each case runs in a fresh interpreter (``python -m experiments.benches.idle_memory
--case NAME``): it reads its resident set size, starts ``count`` threads
(or tasks) that block on an event, reads the RSS again and divides. Cases:

- ``thread-default``: OS threads with the platform's default stack (8 MiB of
  address space on Linux; only the pages touched become resident);
- ``thread-64k``: the same with ``threading.stack_size(64 KiB)``;
- ``asyncio-task`` and ``trio-task``: tasks awaiting an event on one loop.

RSS counts user-space pages only. Each thread also costs the kernel a task
structure and a kernel stack (16 KiB on x86-64) that no RSS figure shows;
``/proc/meminfo``'s ``KernelStack`` is sampled around the threads' creation
to put a number on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

CASES = ("thread-default", "thread-64k", "asyncio-task", "trio-task")


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def kernel_stack_kib() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("KernelStack:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure_threads(count: int, stack: int | None) -> dict:
    if stack:
        threading.stack_size(stack)
    release = threading.Event()
    started = threading.Barrier(count + 1)

    def idle() -> None:
        started.wait()
        release.wait()

    before, kernel_before = rss_kib(), kernel_stack_kib()
    threads = [threading.Thread(target=idle, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.2)
    after, kernel_after = rss_kib(), kernel_stack_kib()
    release.set()
    for thread in threads:
        thread.join()
    kernel = None if kernel_before is None else (kernel_after - kernel_before) / count
    return {"rss_kib_per_unit": (after - before) / count, "kernel_stack_kib_per_unit": kernel}


def measure_asyncio(count: int) -> dict:
    async def main() -> dict:
        release = asyncio.Event()
        before = rss_kib()
        tasks = [asyncio.create_task(release.wait()) for _ in range(count)]
        await asyncio.sleep(0.2)
        after = rss_kib()
        release.set()
        await asyncio.gather(*tasks)
        return {"rss_kib_per_unit": (after - before) / count, "kernel_stack_kib_per_unit": 0.0}

    return asyncio.run(main())


def measure_trio(count: int) -> dict:
    import trio

    async def main() -> dict:
        release = trio.Event()
        result = {}
        async with trio.open_nursery() as nursery:
            before = rss_kib()
            for _ in range(count):
                nursery.start_soon(release.wait)
            await trio.sleep(0.2)
            result = {"rss_kib_per_unit": (rss_kib() - before) / count, "kernel_stack_kib_per_unit": 0.0}
            release.set()
        return result

    return trio.run(main)


def run_case(case: str, count: int) -> dict:
    if case == "thread-default":
        return measure_threads(count, None)
    if case == "thread-64k":
        return measure_threads(count, 64 * 1024)
    if case == "asyncio-task":
        return measure_asyncio(count)
    if case == "trio-task":
        return measure_trio(count)
    raise ValueError(f"unknown case {case!r}")


def measure_all(count: int, repeat: int = 3) -> dict:
    """Every case, ``repeat`` fresh processes each; per-unit figures with min and max."""
    results = {}
    for case in CASES:
        values = []
        for _ in range(repeat):
            out = subprocess.run([sys.executable, "-m", "experiments.benches.idle_memory", "--case", case,
                                  "--count", str(count)], capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                raise RuntimeError(f"{case}: {out.stderr.strip()[-500:]}")
            values.append(json.loads(out.stdout))
        rss = sorted(v["rss_kib_per_unit"] for v in values)
        kernel = [v["kernel_stack_kib_per_unit"] for v in values if v["kernel_stack_kib_per_unit"] is not None]
        results[case] = {
            "count": count, "rounds": repeat,
            "rss_kib_per_unit": rss[len(rss) // 2], "rss_kib_min": rss[0], "rss_kib_max": rss[-1],
            "kernel_stack_kib_per_unit": sorted(kernel)[len(kernel) // 2] if kernel else None,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--case", choices=CASES, help="(internal) measure one case in this process")
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.count)))
        return 0
    results = measure_all(args.count, args.repeat)
    for case, r in results.items():
        kernel = r["kernel_stack_kib_per_unit"]
        print(f"{case:<16} {r['rss_kib_per_unit']:7.1f} KiB RSS each ({r['rss_kib_min']:.1f}..{r['rss_kib_max']:.1f})"
              + (f", kernel stack {kernel:.1f} KiB" if kernel else ""))
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
