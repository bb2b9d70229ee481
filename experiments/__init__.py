"""The experiment harness: the same handlers on every runtime, under real load.

How this package is laid out, in the order a reader meets it:

- ``harness/``: running an experiment (``python -m experiments run``): the plan, the
  servers under test and their cost read from /proc, the workloads, the interpreters,
  and the report (tables, plots, CSV) rendered from what a run wrote.
- ``load/``: the load generators: wrk and h2load driven as closed loops (``tools``), and
  ``openload``, our open-loop generator, which times latency from each request's
  intended send time.
- ``apps/``: what the servers under test serve: the handlers (``experiments.apps:NAME``),
  the database workload, and the same workloads written for the peer servers.
- ``benches/``: hello world and real apps against the peers (``make bench``,
  ``bench-apps``, ``bench-h2``, ``bench-tls``), the pool sweep, and the micro
  measurements of threads and tasks.
- ``hostile/``: clients that misbehave on purpose, slowloris, the soak and graceful
  shutdown under load.
- ``claims/``: the seeds' claims, one module per claim (its rule, pre-registered, and its
  text), the experiments they need, and the report.
- ``curves.py``: latency against offered load (the knee, the highest sustained rate);
  it stays at the top because the claims' rules import it (see ``claims/rules.py``).
"""
