"""The experiments behind the claims: harness configurations and micro-benchmarks, each named once.

A claim module names the experiments it needs (``Claim.experiments``); the
runner runs each needed one once, into ``claims-<id>/<name>/<label>/``.
Every experiment here puts the seeds' design (``pinned``) next to ours
(``threaded``, ``hybrid``) and the event loops (``asyncio``, ``trio``), and
states where it approximates the seeds' conditions:

- **500 connections** is seed 003's client count (its load test launched up
  to 500 clients); 64 is the harness's usual level, for continuity.
- **Open loop** (``--rates``) wherever latency is judged: requests fall due
  at a fixed rate and latency runs from the due time (``experiments/load/openload``).
- **25,000 connections in steady state**: mostly idle (2,000 requests/s in
  all, one per 12 s per connection), counted by the kernel, for a minute
  after every connection is open.
- **The seeds' pool**: 15 per CPU (30 here) and a pool in the thousands:
  ``pinned`` is the seeds' design with its default pool, ``pinned~1000``
  the same with ``--max-workers 1000`` (seed 002: "the cap can be in the
  thousands"), measured side by side in the same rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EXPERIMENTS", "Experiment", "RUNTIMES"]

RUNTIMES = "threaded,pinned,pinned~1000,hybrid,asyncio,trio"


@dataclass(frozen=True)
class Experiment:
    name: str
    what: str  # one line for the report
    #: ``python -m experiments run`` arguments, one list per harness invocation
    #: (several for a comparison of server options), keyed by a label.
    harness: dict[str, list[str]] = field(default_factory=dict)
    #: or a module run as ``python -m MODULE ARGS`` writing ``OUTPUT``.
    module: tuple[str, list[str], str] | None = None
    #: Estimate per interpreter, for the plan: the harness's own estimate (``--dry-run``), with the open-loop
    #: ladders cut where the astra runtimes usually pass their knee.
    minutes: float = 1.0


def harness(conc: str, runtimes: str, workloads: str, *extra: str, server: str = "",
            parser: str = "h11") -> list[str]:
    """One harness invocation. The HTTP/1 parser is always named: the server's default (auto) takes
    httptools wherever it is installed, so an unnamed parser would depend on the venv."""
    return ["--conc", conc, "--runtimes", runtimes, "--workloads", workloads, *extra,
            "--server-args", f"--http1-parser {parser} {server}".strip()]


def _rates(*values: int) -> str:
    return ",".join(str(v) for v in values)


HELLO_RATES = _rates(1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000, 20000, 25000, 30000, 40000, 50000, 60000)
DB_RATES = _rates(250, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000)
CPU_RATES = _rates(250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000)
ROUNDS = ("--repeat", "3")

EXPERIMENTS = {e.name: e for e in [
    Experiment(
        "workloads", "closed loop (wrk): every runtime, hello / cpu / sleep / file, 64 and 500 connections, 3 rounds; "
                     "hello again with the httptools parser",
        harness={"all": harness("64,500", RUNTIMES, "hello,cpu,sleep,file", "--duration", "4", "--warmup", "1",
                                "--fairness", "2", *ROUNDS),
                 "httptools": harness("64,500", RUNTIMES, "hello", "--duration", "4", "--warmup", "1",
                                      "--fairness", "2", *ROUNDS, parser="httptools")},
        minutes=25),
    Experiment(
        "db", "closed loop: TechEmpower fortunes on a throwaway PostgreSQL (pinned to CPU 1) with Jinja2, every "
              "runtime, 64 and 500 connections, 3 rounds",
        harness={"all": harness("64,500", RUNTIMES, "db", "--duration", "4", "--warmup", "1", "--fairness", "2",
                                *ROUNDS)},
        minutes=5),
    Experiment(
        "curves", "open loop (openload), 500 connections: latency against offered load for hello (every runtime, "
                  "and uvicorn with httptools and uvloop, granian, waitress) and db (every runtime), 3 rounds; "
                  "hello again over a 10 ms round trip (2 rounds); each runtime's ladder stops two rates past "
                  "its knee",
        harness={"hello": harness("500,", RUNTIMES, "hello", "--rates", HELLO_RATES, "--duration", "6",
                                  "--warmup", "1", "--pause", "0.5", *ROUNDS,
                                  "--peers", "uvicorn-fast,granian-wsgi,waitress"),
                 "db": harness("500,", RUNTIMES, "db", "--rates", DB_RATES, "--duration", "6", "--warmup", "1",
                               "--pause", "0.5", *ROUNDS),
                 # The network condition: a 10 ms round trip between client and server, played by openload
                 # (this kernel has no netem). Each connection then carries at most ~95 requests/s.
                 "hello-rtt10": harness("500,", RUNTIMES, "hello", "--rates", HELLO_RATES, "--rtt-ms", "10",
                                        "--duration", "6", "--warmup", "1", "--pause", "0.5", "--repeat", "2")},
        minutes=70),
    Experiment(
        "switch-interval", "threaded, hello, 100 connections, sys.setswitchinterval 0.5 / 5 / 50 ms",
        harness={f"{ms}ms": harness("100,", "threaded", "hello", "--duration", "4", "--fairness", "3",
                                    "--repeat", "2", server=f"--switch-interval {ms / 1000}")
                 for ms in (0.5, 5, 50)},
        minutes=2),
    Experiment(
        "scale", "open loop, steady state: 10,000 and 25,000 connections (several server processes), 2,000 "
                 "requests/s in all, 60 s after every connection is open, connections counted by the kernel; "
                 "every runtime, and pinned with a pool of 10,000 workers per process",
        harness={"all": harness("10000,25000", "threaded,pinned,pinned~10000,hybrid,asyncio,trio", "hello",
                                "--rates", "2000", "--duration", "60", "--warmup", "5", "--p99-bound-ms", "1000")},
        minutes=14),
    Experiment(
        "pool-size", "closed loop: sleep (10 ms), 1,000 connections, the seeds' design (pinned) and hybrid with "
                     "30 workers (15 per CPU, the seeds' default) and with 1,000; 3 rounds",
        harness={"all": harness("1000,", "pinned~30,pinned~1000,hybrid~30,hybrid~1000", "sleep", "--duration", "4",
                                "--fairness", "3", *ROUNDS)},
        minutes=3),
    Experiment(
        "scaling", "open loop: the cpu workload, 64 connections, 1 and 2 server processes (SO_REUSEPORT) on every "
                   "runtime; latency against offered load, 2 rounds",
        harness={
            "1-process": harness("64,", RUNTIMES, "cpu", "--rates", CPU_RATES, "--duration", "6", "--warmup", "1",
                                 "--pause", "0.5", "--repeat", "2"),
            # Two processes need both cores, so the load generator shares them: said in the report.
            "2-processes": harness("64,", RUNTIMES, "cpu", "--rates", CPU_RATES, "--duration", "6", "--warmup", "1",
                                   "--pause", "0.5", "--repeat", "2", "--server-cpus", "0,1", "--client-cpus", "0,1",
                                   server="--workers 2"),
        },
        minutes=25),
    Experiment(
        "slowloris", "slowhttptest (2,000 slow connections: headers, body, read) against each runtime, alone "
                     "(header timeout 10 s, and 60 s for slow headers) and behind nginx (buffering on and off); a "
                     "normal visitor's success and latency, the server's and the kernel's memory",
        module=("experiments.hostile.slowloris", ["--seconds", "15", "--runtimes", RUNTIMES, "-o", "{out}"],
                "slowloris.json"),
        minutes=17),
    Experiment(
        "micro", "pyperf: switch and creation costs of threads and tasks",
        module=("experiments.benches.micro", ["--fast", "-o", "{out}"], "micro.json"), minutes=3),
    Experiment(
        "memory", "RSS per idle thread (default and 64 KiB stacks) and per idle task, 2,000 of each",
        module=("experiments.benches.idle_memory", ["--count", "2000", "-o", "{out}"], "memory.json"), minutes=1),
]}
