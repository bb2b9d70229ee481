"""The TLS benchmark: handshakes and requests over HTTPS, astra's runtimes against the peers.

``python -m experiments bench-tls [--rounds 3] [--duration 5] [--runtimes ...] [--peers ...]``

Every server serves hello world with the same certificate (ECDSA P-256,
made here by ``openssl``), pinned to CPU 0; the load generator runs on
CPU 1. Each server is measured at five loads, in rounds (every server once
per round, in the same order), so that a slow minute of the machine lands
on everyone:

=================  =====================================================================
``handshakes``     wrk, 32 connections, ``Connection: close``: every request a new TCP
                   connection and a full TLS handshake (wrk does not resume sessions),
                   so requests/s is handshakes/s
``connects``       the same over cleartext: what a connection costs without TLS
``h1``             wrk, 64 keep-alive connections over TLS (HTTP/1.1 by ALPN)
``h1-plain``       the same in cleartext
``h2``             h2load, 16 connections x 10 streams over TLS (HTTP/2 by ALPN)
``h2-plain``       the same over h2c with prior knowledge, where the server has it
=================  =====================================================================

A server without HTTP/2 (uvicorn) answers h2load's ALPN with http/1.1 and
h2load carries on in HTTP/1.1: those runs are kept in the JSON, with the
protocol h2load reports, and left out of the HTTP/2 figures.
``--render FILE`` prints a saved run's tables again.

The server's CPU time per request comes from its process tree's counters,
so "what TLS costs" is read as CPU per request over TLS against the same
server's in cleartext, from the same round. The peers are the servers a
user would choose for HTTPS instead: uvicorn (h11; httptools with uvloop),
hypercorn and granian, each with its own TLS (Python's ``ssl``, or
granian's rustls). Results: ``results/tls_bench-<timestamp>.json``, and a
table of medians with each spread (min..max over rounds).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from astra import available_runtimes

from ..harness.servers import ServerProcess, cpu_us
from ..load.tools import LUA_SCRIPT, parse_h2load, parse_wrk_json
from .hello import RESULTS_DIR, version
from .servers import astra_argv, peer_table

SERVER_CPU, CLIENT_CPU = 0, 1
LOADS = ("handshakes", "connects", "h1", "h1-plain", "h2", "h2-plain")
PEERS = ("uvicorn-httptools-uvloop", "uvicorn-h11", "hypercorn", "granian-asgi")
#: How each peer is told to serve TLS (certificate, key).
PEER_TLS = {
    "uvicorn": ["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}"],
    "hypercorn": ["--certfile", "{cert}", "--keyfile", "{key}"],
    "granian": ["--ssl-certificate", "{cert}", "--ssl-keyfile", "{key}", "--ssl-protocol-min", "tls1.2"],
}
#: Servers that speak h2c (cleartext HTTP/2 by prior knowledge); the rest skip ``h2-plain``.
H2C = ("astra-", "hypercorn")


def make_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1: (certificate, key)."""
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def servers(runtimes: list[str], peers: list[str], cert: str, key: str) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (cleartext argv, TLS argv), with ``{port}`` to fill."""
    table = {}
    for runtime in runtimes:
        plain = astra_argv(runtime, "httptools", "async")
        table[f"astra-{runtime}"] = (plain, [*plain, "--certfile", cert, "--keyfile", key])
    known = peer_table()
    for name in peers:
        _, argv = known[name]
        family = name.split("-")[0]
        tls = [a.replace("{cert}", cert).replace("{key}", key) for a in PEER_TLS[family]]
        table[name] = (argv, [*argv, *tls])
    return table


def wrk(url: str, conns: int, seconds: int, close: bool) -> dict:
    cmd = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
           "-s", str(LUA_SCRIPT), *(["-H", "Connection: close"] if close else []), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    result = parse_wrk_json(out.stdout)
    return {"requests": result["requests"], "requests_per_s": result["requests_per_s"],
            "errors": sum(result["errors"].values()), "p99_us": result["latency_us"].get("p99")}


def h2load(url: str, seconds: int) -> dict:
    cmd = ["taskset", "-c", str(CLIENT_CPU), "h2load", "-t1", "-c16", "-m10", f"-D{seconds}",
           "--warm-up-time=1", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    result = parse_h2load(out.stdout)
    return {"requests": result["succeeded"], "requests_per_s": result["requests_per_s"],
            "errors": result["failed"] + result["errored"] + result["timeout"], "protocol": result["protocol"]}


def measure_load(load: str, port: int, pid: int, seconds: int) -> dict:
    tls = not load.endswith(("-plain", "connects"))
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
    before = cpu_us(pid)
    if load.startswith("h2"):
        result = h2load(url, seconds)
    else:
        result = wrk(url, 32 if load in ("handshakes", "connects") else 64, seconds,
                     close=load in ("handshakes", "connects"))
    cpu = cpu_us(pid) - before
    result["cpu_us_per_request"] = cpu / result["requests"] if result["requests"] else None
    return result


def measure(name: str, argvs: tuple[list[str], list[str]], loads: list[str], args, round_no: int) -> list[dict]:
    rows = []
    for tls in (False, True):
        wanted = [load for load in loads if (not load.endswith("-plain") and load != "connects") == tls
                  and not (load == "h2-plain" and not name.startswith(H2C))]
        if not wanted:
            continue
        with tempfile.TemporaryFile("w+") as log:
            server = ServerProcess(argvs[tls], cpus=[SERVER_CPU], log=log, tls=tls)
            try:
                server.wait_ready()
                for load in wanted:
                    measure_load(load, server.port, server.proc.pid, 1)  # warm-up, discarded
                    time.sleep(args.pause)
                    row = measure_load(load, server.port, server.proc.pid, args.duration)
                    row.update(server=name, load=load, round=round_no)
                    rows.append(row)
                    print(f"  {load:<11} {row['requests_per_s']:>9,.0f} req/s  "
                          f"{row['cpu_us_per_request'] or 0:>7.1f} us/req  errors {row['errors']}", flush=True)
            except Exception as exc:  # one failed server must not sink the comparison
                print(f"  ! {name}{' (TLS)' if tls else ''}: {exc}", flush=True)
            finally:
                server.stop()
    return rows


def summarize(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """server -> load -> median and min..max over rounds, of req/s and CPU per request."""
    out: dict[str, dict[str, dict]] = {}
    for row in rows:
        if row["load"].startswith("h2") and row.get("protocol") not in ("h2", "h2c"):
            continue  # h2load fell back to HTTP/1.1: the server has no HTTP/2 (uvicorn), not a figure for h2
        out.setdefault(row["server"], {}).setdefault(row["load"], {"rps": [], "cpu": []})
        cell = out[row["server"]][row["load"]]
        cell["rps"].append(row["requests_per_s"])
        if row["cpu_us_per_request"]:
            cell["cpu"].append(row["cpu_us_per_request"])
    for loads in out.values():
        for cell in loads.values():
            for key in ("rps", "cpu"):
                cell[key] = _spread(cell.pop(key))
    # What TLS multiplies CPU per request by, paired within each round (a slow minute of the
    # machine lands on both halves of a pair), then the median and spread of those ratios.
    cpu = {(r["server"], r["load"], r["round"]): r["cpu_us_per_request"] for r in rows}
    for server, loads in out.items():
        for tls_load, plain_load in (("h1", "h1-plain"), ("h2", "h2-plain")):
            if tls_load in loads:
                loads[tls_load]["cpu_ratio"] = _spread([
                    cpu[key] / cpu[(server, plain_load, key[2])] for key in cpu
                    if key[:2] == (server, tls_load) and cpu[key] and cpu.get((server, plain_load, key[2]))])
    return out


def _spread(values: list[float]) -> dict | None:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def render(summary: dict[str, dict[str, dict]], loads: list[str]) -> str:
    """Medians with their spread; then what TLS costs each server, per request, in the same runs."""
    lines = ["req/s, median (min..max over rounds)", ""]
    head = f"{'server':<26}" + "".join(f"{load:>25}" for load in loads)
    lines += [head, "-" * len(head)]
    for server, cells in summary.items():
        row = f"{server:<26}"
        for load in loads:
            rps = (cells.get(load) or {}).get("rps")
            cell = f"{rps['median']:,.0f} ({rps['min']:,.0f}..{rps['max']:,.0f})" if rps else "-"
            row += f"{cell:>25}"
        lines.append(row)
    lines += ["", "CPU per request (us, median), and what TLS multiplies it by (median, min..max of the",
              "ratio within each round)", ""]
    head = (f"{'server':<26}{'handshake':>11}{'connect':>9}{'h1 tls':>9}{'h1':>7}{'h1 x':>18}"
            f"{'h2 tls':>9}{'h2':>7}{'h2 x':>18}")
    lines += [head, "-" * len(head)]
    for server, cells in summary.items():
        def cpu(load: str) -> str:
            value = (cells.get(load) or {}).get("cpu")
            return f"{value['median']:.0f}" if value else "-"

        def ratio(load: str) -> str:
            value = (cells.get(load) or {}).get("cpu_ratio")
            return f"{value['median']:.2f} ({value['min']:.2f}..{value['max']:.2f})" if value else "-"

        lines.append(f"{server:<26}{cpu('handshakes'):>11}{cpu('connects'):>9}{cpu('h1'):>9}{cpu('h1-plain'):>7}"
                     f"{ratio('h1'):>18}{cpu('h2'):>9}{cpu('h2-plain'):>7}{ratio('h2'):>18}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtimes", default=",".join(available_runtimes()))
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--loads", default=",".join(LOADS))
    p.add_argument("--duration", type=int, default=5, help="seconds per measured load (whole seconds: wrk)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pause", type=float, default=0.5)
    p.add_argument("-o", "--output", type=Path, help="default: results/tls_bench-<timestamp>.json")
    p.add_argument("--render", type=Path, metavar="JSON", help="print the tables of a saved run; measure nothing")
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        print(render(summarize(saved["runs"]), [load for load in LOADS if any(r["load"] == load for r in saved["runs"])]))
        return 0
    missing = [tool for tool in ("wrk", "h2load", "openssl", "taskset") if shutil.which(tool) is None]
    if missing:
        print(f"{', '.join(missing)} needed: `make tools`", file=sys.stderr)
        return 2
    loads = [load for load in args.loads.split(",") if load]
    if unknown := set(loads) - set(LOADS):
        raise SystemExit(f"unknown loads: {', '.join(sorted(unknown))}; choose from {', '.join(LOADS)}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tls-bench-") as tmp:
        cert, key = make_certificate(Path(tmp))
        table = servers([r for r in args.runtimes.split(",") if r], [x for x in args.peers.split(",") if x],
                        cert, key)
        for round_no in range(1, args.rounds + 1):
            for name, argvs in table.items():
                print(f"round {round_no}: {name}", flush=True)
                rows += measure(name, argvs, loads, args, round_no)
    summary = summarize(rows)
    print("\n" + render(summary, loads))
    out = args.output or RESULTS_DIR / f"tls_bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tools = {tool: (subprocess.run([tool, *flag], capture_output=True, text=True).stdout.strip() + "\n").splitlines()[0]
             for tool, flag in (("wrk", ["-v"]), ("h2load", ["--version"]), ("openssl", ["version"]))}
    out.write_text(json.dumps({
        "when": datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
        "python": sys.version.split()[0], "openssl": __import__("ssl").OPENSSL_VERSION, "tools": tools,
        "packages": {p: version(p) for p in ("uvicorn", "hypercorn", "granian", "httptools", "uvloop", "h2")},
        "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU, "duration_s": args.duration, "rounds": args.rounds,
        "runs": rows, "summary": summary,
    }, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
