"""Graceful shutdown under load, on every runtime and both protocols (experiments.shutdown's check, small N).

A real server process gets SIGTERM with ten one-second requests in flight;
none may be lost, newcomers must be refused within a second, and the
process must exit within its shutdown timeout plus 1.5 s. The checks are the
experiment's own (``experiments.shutdown.judge``), not relaxed for tests.
"""

from __future__ import annotations

import pytest

from astra import available_runtimes
from experiments.shutdown import run_case

N = 10
SHUTDOWN_TIMEOUT = 3.0


@pytest.mark.parametrize("protocol", ["h1", "h2"])
@pytest.mark.parametrize("runtime", available_runtimes())
def test_sigterm_with_requests_in_flight(runtime: str, protocol: str, request) -> None:
    if runtime == "pinned":
        # A known failure, measured by experiments/shutdown.py and open in the hostile-clients issue:
        # connections queued for a worker are closed unanswered at shutdown.
        request.applymarker(pytest.mark.xfail(reason="pinned drops queued connections at shutdown", strict=False))
    if runtime == "threaded" and protocol == "h2":
        # Also known and open: a stream the GOAWAY covered may be cut off when the connection closes.
        request.applymarker(pytest.mark.xfail(reason="threaded h2 may close before covered streams end",
                                              strict=False))
    row = run_case(runtime, protocol, n=N, handler_ms=1000, shutdown_timeout=SHUTDOWN_TIMEOUT, slack=1.5)
    assert "error" not in row, row.get("error")
    assert row["checks"]["no_request_lost"], f"lost {row['lost']} of {N}: {row['lost_kinds']}"
    assert row["checks"]["newcomers_refused"], row["probes"]
    assert row["checks"]["exit_in_time"], f"exit after {row['exit_s']} s (limit {row['limit_s']} s)"
