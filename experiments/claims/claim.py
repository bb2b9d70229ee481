"""What a claim is: the seeds' words, the question, the experiments, the rule, and the judgement."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .results import DESIGNS, Design, Results, Verdict
from .rules import ROOT

__all__ = ["Claim"]


@dataclass(frozen=True)
class Claim:
    number: int
    claim: str  # what the seeds claim, in this project's words
    source: str  # the seed files
    question: str
    experiments: tuple[str, ...]  # names in experiments.claims.experiments.EXPERIMENTS
    #: The rule in words: what is measured, the thresholds, the word for each outcome. The code above the
    #: module's "# Presentation" line implements it; both are fingerprinted (see rules.py).
    rule: str
    judge: Callable[[Results, Design], Verdict]
    module: Path  # the claim's module: its rule's fingerprint is taken from it
    #: Judged once per design (the seeds' and ours), or once (a property of threads, not of a server).
    by_design: bool = True

    def designs(self) -> tuple[Design, ...]:
        return DESIGNS if self.by_design else DESIGNS[:1]

    def commands(self, run_dir: Path, interpreters: list[str]) -> tuple[str, str]:
        """The one command that measures this claim again as the run did (on its interpreters), and the one
        that judges the run again from its files."""
        chosen = [str(i) for i in interpreters]
        flag = "" if chosen == ["standard"] else f" INTERPRETERS={','.join(chosen)}"
        where = run_dir.relative_to(ROOT) if run_dir.is_absolute() and run_dir.is_relative_to(ROOT) else run_dir
        return f"make claims CLAIM={self.number}{flag}", f"make claims FROM={where}"

    def design_title(self, design: Design) -> str:
        """The design as this claim measures it: the module's ``DESIGN_TITLES`` (below its "# Presentation"
        line) where a claim measures other runtimes than the design's usual ones, else the design's title."""
        titles = getattr(sys.modules.get(self.judge.__module__), "DESIGN_TITLES", {})
        return titles.get(design.key, design.title)

    def read_with(self, results: Results, design: Design) -> list[str]:
        """What a reader must know to read the verdict, computed from the run: the claim module's ``read_with``
        function, if it has one, below its "# Presentation" line. It judges nothing, so it may change freely
        (a condition found after the data is stated there, while the rule waits for a new run)."""
        notes = getattr(sys.modules.get(self.judge.__module__), "read_with", None)
        return list(notes(results, design)) if notes else []
