"""What a claim is: the seeds' words, the question, the experiments, the rule, and the judgement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .results import DESIGNS, Design, Results, Verdict

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
