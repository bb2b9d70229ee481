"""make bench-apps: the server table and the issue's targets, judged on made-up runs.

No servers here: what can go wrong in the bench's own code is which servers
it plans and how it turns rounds into verdicts (the serving itself is tested
by test_wsgi.py and test_asgi.py, and the method is make bench's).
"""

from __future__ import annotations

from experiments.benches import apps as app_bench

from .test_hello_bench import run


def test_every_runtime_gets_native_wsgi_and_flask_and_the_event_loops_asgi_too():
    args = app_bench.parse_args(["--runtimes", "threaded,trio", "--peers", "waitress/flask"])
    servers = app_bench.choose(args)
    assert {"astra-threaded/native", "astra-threaded/wsgi", "astra-threaded/flask"} <= set(servers)
    assert "astra-threaded/asgi" not in servers  # a thread runtime cannot await an ASGI app
    assert {"astra-trio/native-async", "astra-trio/asgi", "astra-trio/starlette"} <= set(servers)
    assert [name for name in servers if not name.startswith("astra-")] == ["waitress/flask"]
    argv, _ = servers["astra-trio/starlette"]
    assert argv[argv.index("--interface") + 1] == "asgi" and "{port}" in " ".join(argv)


def test_the_targets_are_judged_round_by_round():
    runs = []
    for round_no, (ours, gunicorn, native, wsgi) in enumerate([(1300, 1000, 60, 70), (1250, 1000, 60, 80),
                                                               (1400, 1000, 60, 72)], 1):
        runs += [run("astra-threaded/flask", 64, round_no, ours), run("gunicorn-gthread/flask", 64, round_no, gunicorn),
                 run("astra-threaded/native", 64, round_no, 5000, cpu=native),
                 run("astra-threaded/wsgi", 64, round_no, 4000, cpu=wsgi)]
    planned = {r["server"] for r in runs}
    checks = {c["check"]: c for c in app_bench.judge(runs, ["threaded"], planned, [64])}
    assert checks["best astra Flask vs gunicorn-gthread/flask"]["verdict"] == "met"  # 1.25-1.4x >= 1.2x
    # WSGI over native CPU per request: 1.17, 1.33, 1.2 straddle 1.25
    assert checks["astra-threaded/wsgi CPU/request vs astra-threaded/native"]["verdict"] == "inconclusive"
    assert "best astra Flask vs waitress/flask" not in checks  # waitress was not in the plan


def test_http2_rows_are_the_framework_apps_on_astra_and_the_peers_that_speak_h2c():
    args = app_bench.parse_args(["--runtimes", "threaded,trio", "--protos", "h2"])
    servers = app_bench.choose(args)
    assert {"astra-threaded/flask/h2", "astra-trio/flask/h2", "astra-trio/starlette/h2"} <= set(servers)
    assert not [name for name in servers if not name.endswith("/h2")]  # h1 not asked for
    assert "waitress/flask/h2" not in servers and "uvicorn/starlette/h2" not in servers  # no HTTP/2 there
    argv, proto = servers["gunicorn-gthread/flask/h2"]
    assert proto == "h2" and "--http2-cleartext" in argv
    assert app_bench.choose(app_bench.parse_args(["--runtimes", "threaded", "--peers", "hypercorn/starlette"])) \
        .keys() >= {"astra-threaded/flask", "hypercorn/starlette", "hypercorn/starlette/h2"}
