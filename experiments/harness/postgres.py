"""A throwaway PostgreSQL cluster for the ``db`` workload: created, seeded, stopped.

``with Cluster(cpus=[1]) as pg: ... pg.dsn ...`` runs ``initdb`` in a
temporary directory, starts the server on a free loopback port (and a
private Unix socket directory), creates the TechEmpower "fortunes" table with
its twelve rows, and on exit stops the server and deletes the directory.
PostgreSQL refuses to run as root; run as root, the cluster belongs to the
``postgres`` user (Debian's package creates it) and the commands run through
``runuser``. The server is pinned to ``cpus`` with ``taskset`` so it does not
share the web server's core, and :meth:`Cluster.cpu_seconds` reports its own
CPU time (every backend process), to set next to the web server's.

When PostgreSQL is not installed, :class:`PostgresMissing` says which Debian
package to install; :func:`ensure_installed` tries ``apt-get`` first when
allowed (root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .servers import cpu_us, descendants

PACKAGE = "postgresql"
#: The TechEmpower fortunes, as their benchmark specifies them.
FORTUNES = [
    "fortune: No such file or directory",
    "A computer scientist is someone who fixes things that aren't broken.",
    "After enough decimal places, nobody gives a damn.",
    "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    "A computer program does what you tell it to do, not what you want it to do.",
    "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen",
    "Any program that runs right is obsolete.",
    "A list is only as strong as its weakest link. — Donald Knuth",
    "Feature: A bug with seniority.",
    "Computers make very fast, very accurate mistakes.",
    '<script>alert("This should not be displayed in a browser alert box.");</script>',
    "フレームワークのベンチマーク",
]


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed (and could not be)."""


def bindir() -> Path | None:
    """Where initdb and pg_ctl live: PATH, pg_config, or Debian's versioned directory."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(shutil.which("initdb")).resolve().parent
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def ensure_installed() -> Path:
    found = bindir()
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], check=False, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = bindir()
        if found:
            return found
    raise PostgresMissing(f"PostgreSQL is not installed: install Debian's `{PACKAGE}` package "
                          f"(apt-get install {PACKAGE})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, cpus: list[int] | None = None, max_connections: int = 300) -> None:
        self.cpus = cpus
        self.max_connections = max_connections
        self.port = _free_port()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._as: list[str] = []

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=bench user=bench password=bench"

    def _run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as, *argv], check=True, capture_output=True, text=True, **kwargs)

    def __enter__(self) -> Cluster:
        bins = ensure_installed()
        self._tmp = tempfile.TemporaryDirectory(prefix="astra-pg-")
        root = Path(self._tmp.name)
        self.data, self.sockets = root / "data", root / "sockets"
        self.sockets.mkdir()
        if os.geteuid() == 0:  # postgres will not run as root
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres")
            shutil.chown(self.sockets, "postgres")
            os.chmod(root, 0o700)
        try:
            self._run(str(bins / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8", "--locale", "C")
            options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                       f"-c max_connections={self.max_connections} -c fsync=off -c synchronous_commit=off "
                       "-c full_page_writes=off -c shared_buffers=64MB")
            pin = ["taskset", "-c", ",".join(map(str, self.cpus))] if self.cpus and shutil.which("taskset") else []
            self._run(*pin, str(bins / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                      str(root / "postgres.log"), "-w", "start")
            self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
            psql = [str(bins / "psql"), "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-q"]
            self._run(*psql, "-d", "postgres", "-c", "CREATE ROLE bench LOGIN PASSWORD 'bench'")
            self._run(*psql, "-d", "postgres", "-c", "CREATE DATABASE bench OWNER bench")
            rows = ",".join(f"({i}, '{text.replace(chr(39), chr(39) * 2)}')" for i, text in enumerate(FORTUNES, 1))
            self._run(*psql, "-d", "bench", "-U", "bench", "-c",
                      f"CREATE TABLE fortune (id integer PRIMARY KEY, message varchar(2048) NOT NULL);"
                      f"INSERT INTO fortune VALUES {rows};")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._bins = bins
        return self

    def cpu_seconds(self) -> float:
        """CPU time of the server and all its backends so far."""
        total = cpu_us(self.pid)
        return total / 1e6

    def backends(self) -> int:
        return len(descendants(self.pid))

    def __exit__(self, *exc) -> None:
        if self._tmp is None:
            return
        bins = bindir()
        if bins and (self.data / "postmaster.pid").exists():
            subprocess.run([*self._as, str(bins / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60)
        time.sleep(0.1)
        self._tmp.cleanup()
        self._tmp = None
