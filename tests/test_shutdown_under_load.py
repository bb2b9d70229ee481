"""Graceful shutdown under load, on every runtime and both protocols (experiments.hostile.shutdown's check, small N).

A real server process gets SIGTERM with ten one-second requests in flight;
none may be lost, newcomers must be refused within a second, and the
process must exit within its shutdown timeout plus 1.5 s. The checks are the
experiment's own (``experiments.hostile.shutdown.judge``), not relaxed for tests.
"""

from __future__ import annotations

import pytest

from astra import available_runtimes
from experiments.hostile.shutdown import run_case

N = 10
SHUTDOWN_TIMEOUT = 3.0


@pytest.mark.parametrize("protocol", ["h1", "h2"])
@pytest.mark.parametrize("runtime", available_runtimes())
def test_sigterm_with_requests_in_flight(runtime: str, protocol: str) -> None:
    row = run_case(runtime, protocol, n=N, handler_ms=1000, shutdown_timeout=SHUTDOWN_TIMEOUT, slack=1.5)
    assert "error" not in row, row.get("error")
    assert row["checks"]["no_request_lost"], f"lost {row['lost']} of {N}: {row['lost_kinds']}"
    assert row["checks"]["newcomers_refused"], row["probes"]
    assert row["checks"]["exit_in_time"], f"exit after {row['exit_s']} s (limit {row['limit_s']} s)"


def test_pinned_connections_queued_for_a_worker_are_answered() -> None:
    """A pool smaller than the connections: requests that arrived and wait in the queue for a worker are served.

    With 8 workers, the prepared keep-alive connections hold 7 and the fresh ones' requests queue (the
    default pool, 15 x CPUs, is large enough that the test above never queues). The shutdown closes the
    idle connections, and their workers take the queued ones.
    """
    row = run_case("pinned", "h1", n=N, handler_ms=1000, shutdown_timeout=SHUTDOWN_TIMEOUT, slack=1.5,
                   server_args=("--max-workers", "8"))
    assert "error" not in row, row.get("error")
    assert row["checks"]["no_request_lost"], f"lost {row['lost']} of {N}: {row['lost_kinds']}"
    assert row["checks"]["exit_in_time"], f"exit after {row['exit_s']} s (limit {row['limit_s']} s)"
