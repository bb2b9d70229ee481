"""What an experiment will do, decided before anything starts: levels, shards, time.

``--conc N`` means the ladder 1, 10, 100, ... up to N, with N itself last;
``--conc 1,64,1000`` is an explicit list. A level with more connections than
one process should hold is *sharded*: the server runs as several processes
(``--workers k``, sharing each address with ``SO_REUSEPORT``) listening on
127.0.0.1 .. 127.0.0.k, and one load generator is aimed at each address. This machine allows 20,000 open files per process and
about 28,000 ephemeral ports per destination address, so 25,000 connections
cannot come from, or go to, a single process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Plan", "ladder", "SHARD_CONNECTIONS", "variant"]

#: Connections one server process (and one load generator) is given at most.
SHARD_CONNECTIONS = 9_000
#: Levels from this many connections on get a fairness run (h2load --h1).
FAIRNESS_FROM = 100
#: The fairness run lasts long enough for a server that answers this many
#: requests per second, shared fairly, to answer every client at least once:
#: at 25,000 connections a 3 s window gives a client of a fair server doing
#: 5,000 requests/s a 60% chance of an answer, so "slowest client: 0"
#: would say more about the window than about the server.
FAIR_SERVER_RATE = 2_000
SERVER_START_S = 2.0  # typical start-up and readiness check, per server process


def ladder(spec: str) -> list[int]:
    """``"25000"`` -> [1, 10, 100, 1000, 10000, 25000]; ``"1,64,1000"`` -> [1, 64, 1000]."""
    spec = str(spec).strip()
    if "," in spec:
        levels = [int(part) for part in spec.split(",") if part.strip()]
    else:
        top = int(spec)
        levels = [10 ** i for i in range(int(math.log10(top)) + 1) if 10 ** i < top] + [top]
    if not levels or min(levels) < 1:
        raise ValueError(f"concurrency levels must be positive: {spec!r}")
    return levels


def variant(runtime: str) -> tuple[str, int | None]:
    """``pinned~1000`` -> (``pinned``, 1000): a pool runtime with ``--max-workers 1000``, measured as its own
    runtime in the same rounds as the others (the seeds' design with its default pool and with a pool in
    the thousands, side by side); a plain name has no cap of its own."""
    name, sep, cap = runtime.partition("~")
    if sep and not cap.isdigit():
        raise ValueError(f"a runtime variant is NAME~WORKERS, e.g. pinned~1000: {runtime!r}")
    return name, int(cap) if sep else None


def shards_for(conc: int, at_least: int = 1) -> int:
    return max(at_least, math.ceil(conc / SHARD_CONNECTIONS))


@dataclass
class Plan:
    runtimes: list[str]
    workloads: list[str]
    levels: list[int]
    proto: str = "h1"
    #: HTTP/2: concurrent streams per connection (h2load -m).
    streams: int = 10
    duration: float = 5.0
    warmup: float = 1.0
    pause: float = 1.0
    repeat: int = 1
    fairness_duration: float = 3.0
    server_cpus: list[int] = field(default_factory=lambda: [0])
    client_cpus: list[int] = field(default_factory=lambda: [1])
    #: Server processes at every level, at least (``--servers``): a control for the sharded levels,
    #: whose processes share the server's core(s).
    min_servers: int = 1
    #: Open loop (``--rates``): offered requests/s at each connection level, driven by openload instead of
    #: wrk; latency runs from each request's due time. Empty: closed loop (wrk keeps every connection busy).
    rates: list[float] = field(default_factory=list)
    arrivals: str = "uniform"  # or "poisson"
    #: Open loop: a rate is *sustained* when at least 95% of it is answered 2xx/3xx with p99 under this
    #: bound; a runtime's ladder stops after two rates in a row that are not (it is past its knee).
    p99_bound_ms: float = 100.0
    #: Open loop: a network round trip played by the generator (openload -L; this kernel has no netem).
    rtt_ms: float = 0.0

    @property
    def open_loop(self) -> bool:
        return bool(self.rates)

    def points(self) -> int:
        """Measured points per (runtime, workload, round): levels, times rates in open loop."""
        return len(self.levels) * max(1, len(self.rates))

    @property
    def shards(self) -> int:
        """Server processes the top level needs."""
        return shards_for(max(self.levels), self.min_servers)

    def server_starts(self) -> int:
        """Servers started per (runtime, workload): one per distinct process count among the levels."""
        return len({shards_for(c, self.min_servers) for c in self.levels})

    @property
    def separate_fairness_run(self) -> bool:
        """HTTP/1.1 is measured with wrk, then h2load --h1 for per-client rates;
        on HTTP/2 the measured h2load run reports them itself."""
        return bool(self.fairness_duration) and self.proto == "h1"

    def fairness_seconds(self, conc: int) -> float:
        """The fairness run at ``conc`` connections: ``fairness_duration``, longer where the level needs it."""
        if conc < FAIRNESS_FROM or not self.separate_fairness_run or self.open_loop:
            return 0.0
        return max(self.fairness_duration, conc / FAIR_SERVER_RATE)

    def level_seconds(self, conc: int) -> float:
        fairness = self.fairness_seconds(conc)
        # Opening thousands of connections is not free either: ~1 s per 10,000.
        one = self.warmup + self.duration + fairness + self.pause + 0.5 + conc / 10_000
        # Open loop: openload connects first (at least 1 s) at every rate; the ladder usually stops early.
        return one if not self.open_loop else len(self.rates) * (one + 1.0)

    def estimate_seconds(self) -> float:
        per_server = self.server_starts() * SERVER_START_S + sum(self.level_seconds(c) for c in self.levels)
        return self.repeat * len(self.runtimes) * len(self.workloads) * per_server

    def describe(self) -> str:
        lines = [
            f"runtimes:   {', '.join(self.runtimes)}",
            f"workloads:  {', '.join(self.workloads)}",
            f"protocol:   {self.proto}" + (f" ({self.streams} concurrent streams per connection, h2load)"
                                               if self.proto == "h2" else " (openload)" if self.open_loop else " (wrk)"),
            f"levels:     {', '.join(f'{c:,}' for c in self.levels)} connections",
            *([f"open loop:  offered {', '.join(f'{r:,g}' for r in self.rates)} requests/s ({self.arrivals} "
               f"arrivals, openload; latency from each request's due time); a runtime stops after two rates in "
               f"a row not sustained (95% answered, p99 under {self.p99_bound_ms:g} ms)"
               + (f"; a {self.rtt_ms:g} ms round trip played by the generator" if self.rtt_ms else "")]
              if self.open_loop else []),
            "servers:    a fresh server per runtime and workload"
            + (f"; levels above {SHARD_CONNECTIONS:,} connections restart it as up to {self.shards} processes"
               f" (--workers, SO_REUSEPORT) on 127.0.0.1..{self.shards}, one load generator per address"
               if self.shards > 1 else ""),
            f"each level: {self.warmup:g} s warm-up (discarded), {self.duration:g} s measured"
            + (f", {self.fairness_duration:g} s fairness run (h2load --h1) from {FAIRNESS_FROM} connections"
               f" (at least 1 s per {FAIR_SERVER_RATE:,} connections)"
               if self.separate_fairness_run and not self.open_loop else "")
            + f", {self.pause:g} s pause",
            f"rounds:     {self.repeat} (median reported)",
            f"pinning:    servers on CPU {','.join(map(str, self.server_cpus))}, "
            f"load generators on CPU {','.join(map(str, self.client_cpus))}",
            f"estimated:  {self.estimate_seconds() / 60:.0f} min",
        ]
        return "\n".join(lines)
