"""Servers under test, in their own processes, and what they cost, read from /proc.

A :class:`ServerProcess` is started (pinned with ``taskset`` when asked),
polled until it answers a GET with 200, and stopped by its PID, never by
name. A :class:`CostSampler` watches a set of server process trees during a
measured window: CPU time, resident memory, threads and context switches,
summed over every process and every thread.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")

__all__ = ["CostSampler", "ServerProcess", "busy_cpus", "cpu_us", "descendants", "free_port", "open_connections"]


# /proc ----------------------------------------------------------------------------

def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()  # [0] is field 3 (state): field n is [n - 3]


def descendants(pid: int) -> dict[int, str]:
    """Children, grandchildren... (hypercorn serves from a child) -> their start times."""
    kids: dict[int, list[tuple[int, str]]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = _stat(int(entry))
            kids.setdefault(int(fields[1]), []).append((int(entry), fields[19]))  # ppid, starttime
        except (OSError, IndexError):
            pass
    found, todo = {}, [pid]
    while todo:
        for child, started in kids.get(todo.pop(), []):
            found[child] = started
            todo.append(child)
    return found


def cpu_us(pid: int) -> float:
    """User+system CPU time of a process tree, all threads, in microseconds."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            fields = _stat(p)
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total * TICK_US


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    return out


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) switches summed over every thread of a process."""
    voluntary = involuntary = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        involuntary += int(line.split()[1])
        except OSError:
            pass  # a thread that ended mid-count
    return voluntary, involuntary


def busy_cpus(seconds: float) -> float:
    """Sleep ``seconds``; return how many CPUs' worth of work the machine did meanwhile."""
    def sample() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    before = sample()
    time.sleep(seconds)
    delta = [b - a for a, b in zip(before, sample())]
    return (os.cpu_count() or 1) * (1 - (delta[3] + delta[4]) / max(sum(delta), 1))  # idle, iowait


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# One server -----------------------------------------------------------------------

class ServerProcess:
    """A server subprocess we started; we stop it, and only it, by PID.

    ``argv`` may contain ``{host}`` and ``{port}``, filled in here. ``cwd``
    (default: this checkout) is where it runs: another checkout's server, e.g.
    an old commit's worktree, runs from there so its own modules are imported.
    """

    def __init__(self, argv: list[str], *, cpus: list[int] | None, log: IO, host: str = "127.0.0.1",
                 port: int | None = None, env: dict[str, str] | None = None,
                 cwd: Path | str | None = None, tls: bool = False) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls  # it serves HTTPS (readiness is asked over TLS, its certificate unchecked)
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}/"
        self.argv = [arg.replace("{port}", str(self.port)).replace("{host}", host) for arg in argv]
        prefix = ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []  # taskset execs: same PID
        self.proc = subprocess.Popen(prefix + self.argv, cwd=cwd or ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def wait_ready(self, timeout: float = 30.0, hosts: list[str] | None = None) -> None:
        """Poll until a GET answers 200 on every one of ``hosts`` (default: our host)."""
        deadline = time.monotonic() + timeout
        for host in hosts or [self.host]:
            while not self._answers(host):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with status {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready on {host} after {timeout:.0f} s")
                time.sleep(0.1)
        # The idle server's memory, before any load: what "growth per connection" is measured against
        # (a baseline taken after a warm-up would already hold the warm-up's threads and buffers).
        self.idle_rss_kib = CostSampler([self.proc.pid]).baseline_rss_kib

    def _answers(self, host: str) -> bool:
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, self.port, timeout=2, context=context)
        else:
            conn = http.client.HTTPConnection(host, self.port, timeout=2)
        try:
            conn.connect()  # TCP first, then one GET
            conn.request("GET", "/")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 10.0) -> str:
        """SIGTERM, then SIGKILL after ``timeout``; returns how it ended."""
        if self.proc.poll() is not None:
            return f"had already exited ({self.proc.returncode})"
        children = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            how = f"exited ({self.proc.wait(timeout)}) after SIGTERM"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            how = f"killed ({self.proc.wait()}) {timeout:.0f} s after SIGTERM"
        for pid, started in children.items():  # workers the parent left behind
            try:
                if _stat(pid)[19] == started:  # the same process, not a reused PID
                    os.kill(pid, signal.SIGKILL)
            except (OSError, IndexError):
                pass
        return how


# Cost of a measured window ---------------------------------------------------------

class CostSampler:
    """Samples server process trees every ``interval`` seconds between start() and stop().

    CPU time and context switches are differences between the two ends of the
    window; memory and threads are peaks over the samples (memory summed
    over the processes at each sample). ``stats_files`` are astra's
    ``--stats-file`` outputs, from which the peak of open connections is read.
    With ``ports`` (the servers' listening ports), open connections are also
    counted from outside, in the kernel's table of TCP sockets, once a
    second: a server whose own stats writer is starved (a thread among
    thousands, with or without the GIL) still shows what it holds.
    """

    def __init__(self, pids: list[int], stats_files: list[Path] = (), interval: float = 0.25,
                 ports: list[int] = (), baseline_rss_kib: int | None = None) -> None:
        self.pids = pids
        self.stats_files = list(stats_files)
        self.interval = interval
        self.ports = {f":{p:04X}" for p in ports}
        self._stop = threading.Event()
        self.peak_rss_kib = 0
        self.peak_threads = 0
        self.peak_established = 0
        self.kernel_series: list[tuple[float, int]] = []  # (seconds since start, established), once a second
        self.baseline_rss_kib = baseline_rss_kib if baseline_rss_kib is not None else self._memory()[0]

    def _trees(self) -> list[int]:
        return [p for pid in self.pids for p in (pid, *descendants(pid))]

    def _memory(self) -> tuple[int, int]:
        rss = threads = 0
        for pid in self._trees():
            try:
                status = _status(pid)
            except OSError:
                continue
            rss += status.get("VmRSS", 0)
            threads += status.get("Threads", 0)
        return rss, threads

    def _switches(self) -> tuple[int, int]:
        totals = [context_switches(pid) for pid in self._trees()]
        return sum(v for v, _ in totals), sum(i for _, i in totals)

    def start(self) -> None:
        self._cpu0 = sum(cpu_us(pid) for pid in self.pids)
        self._switches0 = self._switches()
        self._stats_offsets = [f.stat().st_size if f.exists() else 0 for f in self.stats_files]
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        samples = 0
        while not self._stop.wait(self.interval):
            rss, threads = self._memory()
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_threads = max(self.peak_threads, threads)
            if self.ports and samples % max(1, round(1 / self.interval)) == 0:
                count = self._established()
                self.kernel_series.append((round(time.monotonic() - self._started, 2), count))
                self.peak_established = max(self.peak_established, count)
            samples += 1

    def _established(self) -> int:
        """Server-side ESTABLISHED sockets on our ports, from /proc/net/tcp{,6} (state 01)."""
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        fields = line.split(None, 4)
                        if fields[3] == "01" and fields[1][-5:] in self.ports:
                            count += 1
            except OSError:
                pass
        return count

    def stop(self, requests: int) -> dict:
        self._stop.set()
        self._thread.join()
        cpu = sum(cpu_us(pid) for pid in self.pids) - self._cpu0
        voluntary, involuntary = (b - a for a, b in zip(self._switches0, self._switches()))
        inside = self._peak_connections()
        if self.ports:  # one last count: a short window may end before the first
            self.peak_established = max(self.peak_established, self._established())
        connections = max(inside or 0, self.peak_established) if self.ports else inside
        grown = max(0, self.peak_rss_kib - self.baseline_rss_kib) * 1024
        return {
            "cpu_s": round(cpu / 1e6, 3),
            "cpu_us_per_request": round(cpu / requests, 1) if requests else None,
            "baseline_rss_kib": self.baseline_rss_kib,
            "peak_rss_kib": self.peak_rss_kib,
            "rss_per_connection_bytes": round(grown / connections) if connections else None,
            "peak_threads": self.peak_threads,
            "ctx_voluntary": voluntary,
            "ctx_involuntary": involuntary,
            "connections_established": connections,
            "connections_counted_by_server": inside,
            "connections_counted_by_kernel": self.peak_established if self.ports else None,
            "connections_by_kernel_each_second": [c for _, c in self.kernel_series] if self.ports else None,
        }

    def _peak_connections(self) -> int | None:
        """Sum over servers of each one's peak ``connections_open`` in the window."""
        if not self.stats_files:
            return None
        total = 0
        for path, offset in zip(self.stats_files, self._stats_offsets):
            peak = 0
            try:
                with open(path) as f:
                    f.seek(offset)
                    for line in f:
                        peak = max(peak, json.loads(line).get("connections_open", 0))
            except (OSError, ValueError):
                pass
            total += peak
        return total


def open_connections(stats_files: list[Path]) -> int | None:
    """Connections open now, summed over servers: the last line of each ``--stats-file``."""
    if not stats_files:
        return None
    total = 0
    for path in stats_files:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 4096))
                last = f.read().splitlines()[-1]
            total += json.loads(last).get("connections_open", 0)
        except (OSError, ValueError, IndexError):
            pass
    return total
