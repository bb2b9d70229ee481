"""The seeds' claims, and how the measurements judge each one.

A :class:`Claim` says what the seeds claim (in this project's words), where
(the seed file), which experiments of :mod:`experiments.claims` measure it,
and ``judge``: a function from the measured files to a :class:`Verdict`
(holds / holds with a caveat / does not hold in Python) with the numbers,
their spread and the causal explanation. Thresholds are stated in the code
next to each judgement, so a reader can disagree with them precisely.

"Thread runtimes" are ``threaded`` (a thread per connection) and ``hybrid``
(astra's design: a reactor plus a worker pool); "async runtimes" are
``asyncio`` and ``trio``. Where a claim compares the two, the better of each
pair is compared, and both are listed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .claim_results import (
    ASYNC, CAVEAT, FAILS, HOLDS, PENDING, THREADS, Results, Verdict, best, fmt, missing, ratio, rps,
)
from .verdict_slowloris import judge_slowloris

__all__ = ["ASYNC", "CAVEAT", "CLAIMS", "FAILS", "HOLDS", "PENDING", "THREADS", "Claim", "Results", "Verdict"]


@dataclass(frozen=True)
class Claim:
    number: int
    claim: str
    source: str
    question: str
    experiments: tuple[str, ...]
    judge: Callable[[Results], Verdict]


# The claims --------------------------------------------------------------------------

def judge_hello(results: Results) -> Verdict:
    numbers, ratios = [], {}
    for conc in (1, 64, 1000):
        t_name, t = best(results, THREADS, "hello", conc)
        a_name, a = best(results, ASYNC, "hello", conc)
        ratios[conc] = ratio(t, a)
        numbers.append(f"{conc:,} connections: best thread runtime {t_name} {rps(t)}, best async runtime "
                       f"{a_name} {rps(a)}: threads/async {fmt(ratios[conc])}")
    r64 = ratios.get(64)
    if r64 is None:
        return missing("hello world rows")
    cpu = {n: (results.row("workloads", n, "hello", 64) or {}).get("cpu_us_per_request") for n in THREADS + ASYNC}
    numbers.append("CPU per request at 64 connections: " + ", ".join(
        f"{n} {v:.0f} us" for n, v in cpu.items() if v))
    if r64 >= 1.15:
        verdict, summary = HOLDS, f"threads {r64:.2f}x async at 64 connections"
    elif r64 >= 0.9:
        verdict, summary = CAVEAT, f"parity, not +20%: threads {r64:.2f}x async at 64 connections"
    else:
        verdict, summary = FAILS, f"async ahead: threads {r64:.2f}x async at 64 connections (as the revised claim [001, 002] expects)"
    measured = [v for v in cpu.values() if v]
    why = (f"A hello-world request costs the server {min(measured):.0f}-{max(measured):.0f} us of CPU here "
           "whichever runtime runs it (the figures above); "
           "h11's parsing alone is ~30 us, and the rest is the interpreter executing the protocol layer and "
           "the runtime's bookkeeping. A Rust thread switch or epoll wake-up is a few microseconds, so there "
           "the I/O model decides the throughput; here it is a rounding error next to bytecode execution, and "
           "the runtimes land close together. What differs is where the GIL is handed over: hybrid pays a "
           "hand-off (a futex wake) per request between its reactor and a worker, threaded one per switch "
           "between connection threads.")
    return Verdict(verdict, summary, numbers, why, plots=[f"{results.run_dir('workloads')}/hello-h1.png"],
                   sources=[f"{results.run_dir('workloads')}/runs.jsonl"])


def judge_heavier(results: Results) -> Verdict:
    numbers, gaps = [], {}
    for workload in ("hello", "cpu", "file", "sleep"):
        for conc in (64, 1000):
            _, t = best(results, THREADS, workload, conc)
            _, a = best(results, ASYNC, workload, conc)
            r = ratio(t, a)
            gaps[(workload, conc)] = r
            numbers.append(f"{workload} at {conc:,}: threads/async {fmt(r)} ({rps(t)} vs {rps(a)})")
    for conc in (64, 1000):
        _, t = best(results, THREADS, "db", conc, "db")
        _, a = best(results, ASYNC, "db", conc, "db")
        gaps[("db", conc)] = ratio(t, a)
        if t or a:
            numbers.append(f"db (PostgreSQL + Jinja2) at {conc:,}: threads/async {fmt(gaps[('db', conc)])} "
                           f"({rps(t)} vs {rps(a)})")
    db_cpu = {n: (results.row("db", n, "db", 64) or {}).get("cpu_us_per_request") for n in THREADS + ASYNC}
    if any(db_cpu.values()):
        numbers.append("db at 64: server CPU per request " + ", ".join(
            f"{n} {v:.0f} us" for n, v in db_cpu.items() if v))
    if gaps.get(("hello", 64)) is None:
        return missing("workload rows")
    hello_gap = abs(1 - gaps[("hello", 64)])
    heavier = [abs(1 - g) for (w, c), g in gaps.items() if w != "hello" and c == 64 and g]
    blocking = gaps.get(("sleep", 64)), gaps.get(("file", 64))
    db_gap = gaps.get(("db", 64))
    # Three sub-claims, each held (1), half-held (0.5) or not (0): the gaps shrink as work grows
    # (every heavier gap within 5 points of hello's); blocking I/O puts threads >= 15% ahead
    # (sleep and file: both 1, one 0.5); Postgres with templating is within 15%.
    parts = [
        1.0 if heavier and max(heavier) <= hello_gap + 0.05 else 0.0,
        sum(0.5 for g in blocking if g is not None and g >= 1.15),
        1.0 if db_gap is not None and abs(1 - db_gap) <= 0.15 else 0.0,
    ]
    verdict = HOLDS if min(parts) == 1 else FAILS if max(parts) == 0 else CAVEAT
    summary = (f"hello gap {hello_gap:.0%}; heavier workloads' gaps {', '.join(f'{g:.0%}' for g in heavier)}; "
               f"blocking I/O threads/async {fmt(blocking[0])} (sleep), {fmt(blocking[1])} (file); "
               f"Postgres + templating {fmt(db_gap)}" + (" (about the same)" if db_gap and abs(1 - db_gap) <= 0.15 else ""))
    why = ("As each request does more work, the fixed per-request cost of the runtime is a smaller share and "
           "the runtimes converge. For blocking I/O the async runtimes run the blocking handler on the same "
           "worker pool as hybrid (a blocking call cannot run on the loop), so they pay a loop-to-thread hand-off "
           "on top of the thread runtime's work. With the database, the async runtime on asyncio awaits "
           "psycopg's asyncio API while the others block in its C driver on a worker thread: the database's "
           "round trip, not the runtime, sets the pace, and PostgreSQL's own CPU (recorded next to the server's) "
           "competes with the load generator on CPU 1.")
    return Verdict(verdict, summary, numbers, why,
                   plots=[f"{results.run_dir('workloads')}/{w}-h1.png" for w in ("cpu", "sleep", "file")]
                   + ([f"{results.run_dir('db')}/db-h1.png"] if results.run_dir("db") else []),
                   sources=[f"{results.run_dir('workloads')}/runs.jsonl"]
                   + ([f"{results.run_dir('db')}/runs.jsonl"] if results.run_dir("db") else []))


def compare_p99(results: Results, experiment: str, workload: str, conc: int) -> tuple[str | None, float | None]:
    """Every runtime's p99 for one workload and level, and the best async p99 over the best thread p99."""
    t = {n: results.row(experiment, n, workload, conc) for n in THREADS}
    a = {n: results.row(experiment, n, workload, conc) for n in ASYNC}
    tp = min((r["p99_ms"] for r in t.values() if r and r["p99_ms"]), default=None)
    ap = min((r["p99_ms"] for r in a.values() if r and r["p99_ms"]), default=None)
    measured = [f"{n} {r['p99_ms']:.1f} ms" for n, r in {**t, **a}.items() if r and r["p99_ms"] is not None]
    factor = ap / tp if tp and ap else None
    if not measured:
        return None, None
    line = f"{workload} at {conc:,}: p99 " + ", ".join(measured)
    return line + (f"; async/threads p99 {factor:.2f}x" if factor else ""), factor


def judge_latency(results: Results) -> Verdict:
    numbers, factors = [], []
    # The seeds' own latency claim was made on their database benchmark: db counts too.
    pairs = [("workloads", w, c) for w in ("hello", "cpu", "sleep", "file") for c in (64, 1000)]
    pairs += [("db", "db", c) for c in (64, 1000)]
    for experiment, workload, conc in pairs:
        line, factor = compare_p99(results, experiment, workload, conc)
        if line:
            numbers.append(line)
        if factor:
            factors.append(factor)
    mem = {n: (results.row("workloads", n, "hello", 1000) or {}).get("rss_per_conn_kib") for n in THREADS + ASYNC}
    cpu = {n: (results.row("workloads", n, "hello", 1000) or {}).get("cpu_us_per_request") for n in THREADS + ASYNC}
    numbers.append("at 1,000 connections (hello): RSS per connection " + ", ".join(
        f"{n} {v:.1f} KiB" for n, v in mem.items() if v) + "; CPU per request " + ", ".join(
        f"{n} {v:.0f} us" for n, v in cpu.items() if v))
    if not factors:
        return missing("latency rows")
    factors.sort()
    median = factors[len(factors) // 2]
    if median >= 10:
        verdict = HOLDS
    elif median >= 1.5:
        verdict = CAVEAT
    else:
        verdict = FAILS
    summary = (f"async/threads p99 median {median:.2f}x over {len(factors)} workload/level pairs "
               "(an order of magnitude would be 10x)")
    why = ("Tail latency is decided by who waits for the CPU. A thread-per-connection server in Python has "
           "every thread queue for the GIL, which is handed over every 5 ms (the switch interval) or when the "
           "holder blocks, in no particular order: some connections wait several hand-overs. The hybrid runtime "
           "runs requests in arrival order from one queue, and the event loops run ready tasks round-robin, "
           "both closer to first-come first-served. Memory per connection is a thread's stack pages plus its "
           "kernel stack on threaded; a few KiB of reactor state on hybrid.")
    return Verdict(verdict, summary, numbers, why,
                   plots=[f"{results.run_dir('workloads')}/hello-h1.png", f"{results.run_dir('workloads')}/sleep-h1.png"],
                   sources=[f"{results.run_dir('workloads')}/runs.jsonl"])


def judge_scale(results: Results) -> Verdict:
    numbers, ok = [], {}
    for runtime in THREADS + ASYNC:
        for conc in (10000, 25000):
            r = results.row("scale", runtime, "hello", conc)
            if r is None:
                numbers.append(f"{runtime} at {conc:,}: no measurement")
                ok[(runtime, conc)] = False
                continue
            established = r.get("conns_established")
            served = bool(r["rps"]) and (established or 0) >= 0.9 * conc and not r["errors"]
            ok[(runtime, conc)] = served
            numbers.append(f"{runtime} at {conc:,}: {r['rps']:,.0f} req/s, p99 {fmt(r['p99_ms'], '.0f', ' ms')}, "
                           f"{established or 0:,} connections established, {r['errors']} errors, "
                           f"{r['peak_threads'] or 0:,} threads, per-client req/s "
                           f"{fmt(r['fair_min_rps'], '.2f', '')}..{fmt(r['fair_max_rps'], '.2f', '')}")
    if not results.rows("scale"):
        return missing("scale rows")
    hybrid, threaded = ok.get(("hybrid", 25000)), ok.get(("threaded", 25000))
    if hybrid and threaded:
        verdict, summary = HOLDS, "both thread runtimes serve 25,000 connections"
    elif hybrid:
        verdict, summary = CAVEAT, ("25,000 connections work with blocking handlers on astra's design (hybrid), "
                                    "not with a thread per connection")
    else:
        verdict, summary = FAILS, "no thread runtime served 25,000 connections cleanly"
    why = ("Holding connections is cheap for everyone (see the idle-connection figures: 3.7 KiB each on hybrid). "
           "Serving them is where thread-per-connection breaks in Python: 25,000 threads contend for one GIL, "
           "thread creation alone is ~100 us of interpreter time each, and the accept loop, one thread among "
           "thousands, gets the GIL too rarely to accept the rest. astra's design, which the seeds describe, "
           "keeps the sockets on one evented loop and only the running requests on threads; that is what "
           "makes tens of thousands of connections feasible with blocking handlers.")
    return Verdict(verdict, summary, numbers, why, plots=[f"{results.run_dir('scale')}/hello-h1.png"],
                   sources=[f"{results.run_dir('scale')}/runs.jsonl"])


def judge_thread_memory(results: Results) -> Verdict:
    memory, micro = results.json("memory", "memory.json"), results.micro()
    if not memory or not micro:
        return missing("memory.json or micro.json")
    t, small = memory["thread-default"], memory["thread-64k"]
    numbers = [f"{case}: {m['rss_kib_per_unit']:.1f} KiB RSS each (min {m['rss_kib_min']:.1f}, max "
               f"{m['rss_kib_max']:.1f}, {m['rounds']} processes of {m['count']:,})"
               + (f" + {m['kernel_stack_kib_per_unit']:.1f} KiB kernel stack" if m['kernel_stack_kib_per_unit'] else "")
               for case, m in memory.items()]
    create = {k: micro[k][0] * 1e6 for k in ("create-thread", "create-asyncio-task", "create-trio-task") if k in micro}
    numbers.append("creation (start and finish, pyperf median): " + ", ".join(f"{k} {v:.1f} us" for k, v in create.items()))
    not_committed = abs(t["rss_kib_per_unit"] - small["rss_kib_per_unit"]) < 4
    user_side_small = t["rss_kib_per_unit"] <= 12
    verdict = HOLDS if (not_committed and user_side_small) else CAVEAT if not_committed else FAILS
    summary = (f"{t['rss_kib_per_unit']:.1f} KiB RSS + {t['kernel_stack_kib_per_unit'] or 0:.0f} KiB kernel stack per "
               f"thread (not ~8 KB); stack not committed up front: default and 64 KiB stacks cost the same; "
               f"creating a thread {create.get('create-thread', 0):.0f} us vs a task {create.get('create-asyncio-task', 0):.1f} us")
    tasks = [memory[c]["rss_kib_per_unit"] for c in ("asyncio-task", "trio-task") if c in memory]
    why = ("The kernel maps a thread's 8 MiB stack lazily, so only the pages touched become resident: the seed's "
           "point stands. But a Python thread touches more: the interpreter's thread state and the C stack frames "
           f"of the bootstrap and the wait, {t['rss_kib_per_unit']:.0f} KiB of RSS here, and the kernel keeps a "
           f"{t['kernel_stack_kib_per_unit'] or 0:.0f} KiB stack per thread that no RSS figure shows. An idle "
           f"asyncio or trio task is a coroutine frame and a few objects: {min(tasks):.1f}-{max(tasks):.1f} KiB. "
           "Creation is 'cheap' for the kernel (clone is a few microseconds) but Python's threading.Thread.start "
           "waits for the new thread to run, two GIL trips.")
    return Verdict(verdict, summary, numbers, why, plots=[results.named("memory.png"), results.named("micro.png")],
                   sources=["memory/" + results.named("memory.json"), "micro/" + results.named("micro.json")])


def judge_pool(results: Results) -> Verdict:
    few = results.row("pool-size", "hybrid", "sleep", 1000, "30-workers")
    many = results.row("pool-size", "hybrid", "sleep", 1000, "1000-workers")
    if few is None or many is None:
        return missing("pool-size rows")
    numbers = []
    for label, r in (("30 workers (15 per CPU)", few), ("1,000 workers", many)):
        vol, invol = r.get("ctx_vol") or 0, r.get("ctx_invol") or 0
        numbers.append(f"{label}: {rps(r)}, p99 {r['p99_ms']:.0f} ms, {r['peak_threads']:,} threads, "
                       f"context switches {vol:,} voluntary / {invol:,} involuntary "
                       f"({vol / max(1, vol + invol):.0%} voluntary)")
    gain = ratio(many, few)
    voluntary = min((r.get("ctx_vol") or 0) / max(1, (r.get("ctx_vol") or 0) + (r.get("ctx_invol") or 0))
                    for r in (few, many))
    # Part one (a cap in the thousands beats 15 per CPU) holds when 1,000 workers beat 30 by more than
    # the runs' own noise (their spread over rounds, at least 10%) without a worse p99: the size of the
    # gain is the machine's CPU over the 30-worker ceiling, so a fixed bar would flip with the machine's
    # speed (a 1.5x bar did between two runs of this experiment). Part two: switches almost all voluntary.
    noise = max(0.10, few.get("spread") or 0, many.get("spread") or 0)
    better = bool(gain) and gain > 1 + noise and many["p99_ms"] <= few["p99_ms"] * (1 + noise)
    blocking_only = voluntary >= 0.9
    verdict = HOLDS if better and blocking_only else CAVEAT if better or blocking_only else FAILS
    summary = (f"1,000 workers give {fmt(gain)} the throughput of 30 on a 10 ms blocking handler "
               f"({'beyond' if better else 'within'} the {noise:.0%} noise, p99 {many['p99_ms']:.0f} vs "
               f"{few['p99_ms']:.0f} ms); {voluntary:.0%} of context switches are voluntary")
    why = ("With handlers that block for 10 ms, 30 workers cap throughput at 30 / 10 ms = 3,000 req/s whatever "
           "the CPU; more threads raise the cap until the CPU is the limit, so for I/O-bound handlers the CPU "
           "count is indeed the wrong yardstick. A thread blocked in sleep, recv or on the GIL's condition "
           "variable gives up the CPU itself (a voluntary switch); involuntary switches are the kernel "
           "preempting a thread at the end of its slice, which happens when more threads are runnable than cores.")
    return Verdict(verdict, summary, numbers, why, plots=[results.named("pool-size.png")],
                   sources=[f"{results.run_dir('pool-size', lbl)}/runs.jsonl" for lbl in ("30-workers", "1000-workers")])


def judge_switch(results: Results) -> Verdict:
    micro = results.micro()
    need = ("switch-threads-lock", "switch-asyncio-event", "switch-trio-event", "switch-threads-socket",
            "switch-asyncio-socket", "switch-trio-socket")
    if not all(k in micro for k in need):
        return missing("micro.json switch benchmarks")
    us = {k: micro[k][0] * 1e6 for k in need}
    numbers = [f"{k}: {micro[k][0] * 1e6:.2f} us per switch (min {micro[k][1] * 1e6:.2f}, max {micro[k][2] * 1e6:.2f})"
               for k in need]
    task = min(us["switch-asyncio-event"], us["switch-trio-event"])
    direct = us["switch-threads-lock"] / task
    io_ratio = us["switch-threads-socket"] / min(us["switch-asyncio-socket"], us["switch-trio-socket"])
    converge = 0.5 <= io_ratio <= 2
    verdict = HOLDS if direct >= 3 and converge else CAVEAT if (direct >= 1.5 or converge) else FAILS
    summary = (f"thread switch {us['switch-threads-lock']:.1f} us vs task {task:.1f} us ({direct:.1f}x, seed: 8.5x); "
               f"through a socket threads/tasks {io_ratio:.2f}x (seed: converge)")
    why = ("In Python every switch runs interpreter code on both sides, so the absolute figures are 10-100x the "
           "seed's 0.2 / 1.7 us, and a thread switch also hands over the GIL (a futex wake plus the waiting "
           "thread reacquiring it). Through a socket, a task pays the event loop's selector round trip and "
           "future bookkeeping per readiness event, which is exactly where the seed says the advantage of tasks "
           "disappears.")
    return Verdict(verdict, summary, numbers, why, plots=[results.named("micro.png")], sources=["micro/" + results.named("micro.json")])


def judge_penalty(results: Results) -> Verdict:
    micro = results.micro()
    numbers = []
    _, t = best(results, THREADS, "hello", 64)
    _, a = best(results, ASYNC, "hello", 64)
    server = ratio(a, t)
    numbers.append(f"hello at 64 connections: async/threads throughput {fmt(server)}")
    cpu = [r["cpu_us_per_request"] for r in (t, a) if r and r.get("cpu_us_per_request")]
    if "switch-threads-lock" in micro and "switch-asyncio-event" in micro:
        switch = micro["switch-threads-lock"][0] / micro["switch-asyncio-event"][0]
        numbers.append(f"switch cost threads/asyncio tasks: {switch:.1f}x")
    if server is None:
        return missing("hello rows")
    verdict = HOLDS if server >= 2 else CAVEAT if server >= 1.3 else FAILS
    summary = f"a server pays {fmt(server)} for threads, not 2-3x, even where a bare switch costs more"
    why = ("A switch is a small part of a request in Python: "
           + (f"{min(cpu):.0f}-{max(cpu):.0f} us" if cpu else "over a hundred microseconds")
           + " of CPU per hello-world request against a few to ten microseconds per switch (claim 7), and a "
           "request needs one or two. The ratio of micro-benchmarks does not survive contact with a real "
           "request path.")
    return Verdict(verdict, summary, numbers, why, plots=[results.named("micro.png"), f"{results.run_dir('workloads')}/hello-h1.png"],
                   sources=["micro/" + results.named("micro.json"), f"{results.run_dir('workloads')}/runs.jsonl"])


def judge_scaling(results: Results) -> Verdict:
    one, two = results.rows("scaling", "1-process"), results.rows("scaling", "2-processes")
    if not one or not two:
        return missing("scaling rows")
    numbers, gains, knees = [], {}, {}
    for runtime in sorted({r["runtime"] for r in one}):
        mine1 = sorted((r for r in one if r["runtime"] == runtime and r["rps"]), key=lambda r: r["conc"])
        mine2 = sorted((r for r in two if r["runtime"] == runtime and r["rps"]), key=lambda r: r["conc"])
        if not mine1 or not mine2:
            continue
        gains[runtime] = max(r["rps"] for r in mine2) / max(r["rps"] for r in mine1)
        knees[runtime] = (mine1[0]["p99_ms"], mine1[-1]["p99_ms"])
        for label, rows in (("1 process", mine1), ("2 processes", mine2)):
            numbers.append(f"{runtime}, {label}: " + ", ".join(
                f"{r['conc']} conns {r['rps']:,.0f} req/s p99 {r['p99_ms']:.1f} ms" for r in rows))
    if not gains:
        return missing("scaling rows")
    # Holds: every runtime gains at least 1.8x from a second process (the seed's own step from one core to
    # two was 11k / 6k = 1.83x) and its p99 rises >= 10x from the lightest to the heaviest load; with a
    # caveat when some runtime gains >= 1.2x. (A 1.6x bar sat inside the run-to-run noise of this 2-core
    # machine, where the load generator shares both cores, and flipped between two runs.)
    sharp = all(hi >= 10 * lo for lo, hi in knees.values() if lo)
    verdict = (HOLDS if min(gains.values()) >= 1.8 and sharp else
               CAVEAT if max(gains.values()) >= 1.2 else FAILS)
    summary = ("2 processes over 1, peak throughput: " + ", ".join(f"{n} {g:.2f}x" for n, g in gains.items())
               + " (ideal 2x; the load generator shares both cores); p99 rises "
               + ", ".join(f"{n} {lo:.1f}->{hi:.0f} ms" for n, (lo, hi) in knees.items()))
    why = ("Separate processes do not share a GIL, so CPU-bound Python work scales with processes as the seed's "
           "Rust threads did. On this 2-core machine the second process competes with wrk for the second core, "
           "so 2x cannot be reached; the closed-loop load (more connections, each waiting for its answer) shows "
           "the knee as rising p99 once the server's core is saturated.")
    return Verdict(verdict, summary, numbers, why, plots=[results.named("scaling.png")],
                   sources=[f"{results.run_dir('scaling', lbl)}/runs.jsonl" for lbl in ("1-process", "2-processes")])


CLAIMS = {c.number: c for c in [
    Claim(1, "Hello world: the thread-based server gives ~20% more throughput than the async one; a later revision "
             "expects it to lag behind async in naive hello-world benchmarks", "000; 001, 002",
          "Is a thread runtime faster than an event loop on the smallest possible request?", ("workloads",), judge_hello),
    Claim(2, "With more work per request, especially blocking I/O, the difference diminishes; with pure blocking I/O "
             "threads are ~20% ahead; with Postgres and templating throughput is about the same", "001, 002; 000",
          "Do the runtimes converge as handlers do real work, and who wins on blocking I/O?", ("workloads", "db"),
          judge_heavier),
    Claim(3, "Threads give an order of magnitude better latency, at the cost of higher memory and CPU usage", "000",
          "Whose tail latency is better, and what does it cost?", ("workloads", "db", "switch-interval"),
          judge_latency),
    Claim(4, "Tens of thousands of concurrent connections are feasible with blocking I/O; very good at 25k",
          "000, 001, 002", "Can blocking handlers serve 25,000 connections on this machine?", ("scale",), judge_scale),
    Claim(5, "A new thread's initial memory on Linux is ~8 KB, the stack is not committed up front; "
             "thread creation is cheap", "002", "What does an idle Python thread cost, and a task?",
          ("memory", "micro"), judge_thread_memory),
    Claim(6, "15 threads per CPU is a conservative default, the cap can be in the thousands; I/O-heavy servers "
             "context-switch only when they block", "002",
          "Does a large pool help blocking handlers, and are the switches voluntary?", ("pool-size",), judge_pool),
    Claim(7, "A context switch costs ~0.2 us between async tasks and ~1.7 us between kernel threads; both ~1.7 us "
             "when caused by I/O readiness", "004", "How much does a switch cost in Python?", ("micro",), judge_switch),
    Claim(8, "Threads are a 2-3x performance hit against async", "004",
          "Does the switch cost show up in a server's throughput?", ("micro", "workloads"), judge_penalty),
    Claim(9, "CPU-bound handlers scale linearly with processes sharing the port (SO_REUSEPORT); p99 rises sharply "
             "once the server saturates", "003", "Do processes scale CPU-bound Python, and where is the knee?",
          ("scaling",), judge_scaling),
    Claim(10, "Blocking I/O servers are susceptible to Slowloris; run them behind an async reverse proxy", "001, 002",
          "Which runtime survives slow clients, and does nginx in front help, buffering or not?", ("slowloris",), judge_slowloris),
]}
