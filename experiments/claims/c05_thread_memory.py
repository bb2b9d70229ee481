"""Claim 5: a thread's memory is small and lazily committed; creating one is cheap."""

from __future__ import annotations

from pathlib import Path

from .claim import Claim
from .results import CAVEAT, FAILS, HOLDS, Design, Results, Verdict, missing

RULE = """\
Measured: RSS per idle Python thread with the default stack and with a 64 KiB stack, and the kernel stack per
thread (2,000 threads, 3 processes each: experiments/idle_memory.py); thread and task creation (pyperf median,
experiments/micro.py); a hello-world request's server CPU on threaded at 64 connections (workloads).
Three parts:
1. not committed up front: the default (8 MiB) and 64 KiB stacks cost within 4 KiB of each other;
2. ~8 KB: RSS plus kernel stack per thread is at most 16 KiB (twice the seed's figure);
3. cheap to create: creating and finishing a thread costs at most 10% of a hello-world request's CPU.
Verdict: all three: holds; part 1 and not all of 2 and 3: holds with a caveat; part 1 fails: does not hold.
(Judged once: it is a property of threads, not of a server design.)"""


def judge(results: Results, design: Design) -> Verdict:
    memory, micro = results.json("memory", "memory.json"), results.micro()
    if not memory or not micro or "create-thread" not in micro or "thread-default" not in memory \
            or "thread-64k" not in memory:
        return missing("memory.json or micro.json")
    t, small = memory["thread-default"], memory["thread-64k"]
    kernel = t.get("kernel_stack_kib_per_unit") or 0
    create_us = micro["create-thread"][0] * 1e6
    request = (results.row("workloads", "threaded", "hello", 64) or {}).get("cpu_us_per_request")
    if not request:
        return missing("the hello-world row of threaded at 64 connections (workloads)")
    lazy = abs(t["rss_kib_per_unit"] - small["rss_kib_per_unit"]) <= 4
    small_enough = t["rss_kib_per_unit"] + kernel <= 16
    cheap = bool(request) and create_us <= 0.10 * request
    verdict = HOLDS if lazy and small_enough and cheap else CAVEAT if lazy else FAILS
    summary = (f"stack not committed up front: {'yes' if lazy else 'no'} (default {t['rss_kib_per_unit']:.1f} KiB, "
               f"64 KiB stack {small['rss_kib_per_unit']:.1f} KiB); {t['rss_kib_per_unit']:.1f} KiB RSS + {kernel:.0f} "
               f"KiB kernel stack per thread against the seed's ~8 KB; creating a thread {create_us:.0f} us = "
               + (f"{create_us / request:.0%} of a hello request's CPU ({request:.0f} us)" if request else
                  "(no hello figure to compare)"))
    return Verdict(verdict, summary, figures(memory, micro), why(t, kernel, memory),
                   plots=[results.named("memory.png"), results.named("micro.png")],
                   sources=["memory/" + results.named("memory.json"), "micro/" + results.named("micro.json"),
                            f"{results.run_dir('workloads')}/runs.jsonl"])


CLAIM = Claim(5, "A new thread's initial memory on Linux is ~8 KB, the stack is not committed up front; "
                 "thread creation is cheap", "002", "What does an idle Python thread cost, and a task?",
              ("memory", "micro", "workloads"), RULE, judge, Path(__file__), by_design=False)


# Presentation ------------------------------------------------------------------------

def figures(memory: dict, micro: dict) -> list[str]:
    lines = [f"{case}: {m['rss_kib_per_unit']:.1f} KiB RSS each (min {m['rss_kib_min']:.1f}, max "
             f"{m['rss_kib_max']:.1f}, {m['rounds']} processes of {m['count']:,})"
             + (f" + {m['kernel_stack_kib_per_unit']:.1f} KiB kernel stack" if m["kernel_stack_kib_per_unit"] else "")
             for case, m in memory.items()]
    create = {k: micro[k][0] * 1e6 for k in ("create-thread", "create-asyncio-task", "create-trio-task") if k in micro}
    return lines + ["creation (start and finish, pyperf median): "
                    + ", ".join(f"{k} {v:.1f} us" for k, v in create.items())]


def why(t: dict, kernel: float, memory: dict) -> str:
    tasks = [memory[c]["rss_kib_per_unit"] for c in ("asyncio-task", "trio-task") if c in memory]
    return ("The kernel maps a thread's 8 MiB stack lazily, so only the pages touched become resident: the seed's "
            "point stands. But a Python thread touches more: the interpreter's thread state and the C stack frames of "
            f"the bootstrap and the wait, {t['rss_kib_per_unit']:.0f} KiB of RSS here, and the kernel keeps a "
            f"{kernel:.0f} KiB stack per thread that no RSS figure shows. An idle asyncio or trio task is a coroutine "
            "frame and a few objects"
            + (f": {min(tasks):.1f}-{max(tasks):.1f} KiB. " if tasks else ". ")
            + "Creation is cheap for the kernel (clone is a few microseconds), but Python's threading.Thread.start "
            "waits for the new thread to run: two GIL trips, comparable to serving a whole request.")


def read_with(results: Results, design: Design) -> list[str]:
    """Whether the creation cost and the request it is compared with were measured on the same machine."""
    import json

    micro = (results.json("micro", "micro.json") or {}).get("metadata") or {}
    platform = micro.get("platform", "")
    run = results.run_dir("workloads")
    env_path = results.root / run / "env.json" if run else None
    kernel = json.loads(env_path.read_text()).get("kernel", "") if env_path and env_path.exists() else ""
    release = platform.split("-", 1)[1].rsplit("-x86_64", 1)[0] if platform.startswith("Linux-") else ""
    if not release or not kernel or release in kernel:
        return []
    return [f"The creation cost (micro, on {release}) and the hello request it is set against (workloads, on "
            f"{kernel.split()[2] if len(kernel.split()) > 2 else kernel}) were measured in different sittings, on two "
            "machines of the same kind whose calibration differed (see How the run was measured): read the "
            "percentage as approximate."]
