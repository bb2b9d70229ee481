"""The seeds' claims, one module each: its experiments, its rule, its judgement and its text.

``python -m experiments.claims`` (``make claims``) runs the experiments the
claims need and writes the verdicts (:mod:`.runner`). The pieces:

- ``c01_hello.py`` .. ``c10_slowloris.py``: one claim each. Above the line
  ``# Presentation``: the :class:`~.claim.Claim` (the seeds' words, the
  question, the experiments), ``RULE`` (the rule in words) and the code that
  applies it. Below: the explanation and anything else that may change
  without changing a verdict.
- :mod:`.rules`: the rules' fingerprints, recorded when a run starts and
  checked when it is judged; a rule newer than its data is not applied.
- :mod:`.experiments`: the harness configurations and micro-benchmarks.
- :mod:`.results`: the measured files, the verdict words, the designs.
- :mod:`.report`, :mod:`.gil`, :mod:`.compare`: REPORT.md, the comparison
  with and without the GIL, and REPRODUCIBILITY.md from two runs.

Every claim about servers is judged twice: on the seeds' design (``pinned``)
and on ours (``threaded`` and ``hybrid``), against the event loops.
"""

from __future__ import annotations

from . import (
    c01_hello, c02_heavier, c03_latency, c04_scale, c05_thread_memory, c06_pool, c07_switch, c08_penalty,
    c09_scaling, c10_slowloris,
)
from .claim import Claim
from .results import ASYNC, CAVEAT, FAILS, HOLDS, INCONCLUSIVE, PENDING, THREADS, Results, Verdict

__all__ = ["ASYNC", "CAVEAT", "CLAIMS", "FAILS", "HOLDS", "INCONCLUSIVE", "PENDING", "THREADS", "Claim", "Results",
           "Verdict"]

CLAIMS: dict[int, Claim] = {m.CLAIM.number: m.CLAIM for m in (
    c01_hello, c02_heavier, c03_latency, c04_scale, c05_thread_memory, c06_pool, c07_switch, c08_penalty,
    c09_scaling, c10_slowloris)}
