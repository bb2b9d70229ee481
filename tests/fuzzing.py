"""What the fuzz tests of both protocols share: the Hypothesis profiles, the corpus, ways to cut input into reads."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "astra-short", max_examples=100, deadline=None, database=None, derandomize=True,
    suppress_health_check=_CHECKS,
)
settings.register_profile(
    "astra-fuzz", max_examples=int(os.environ.get("ASTRA_FUZZ_EXAMPLES", "5000")), deadline=None, database=None,
    print_blob=True,
    suppress_health_check=_CHECKS,
)
#: Short runs by default (``make test``); ``ASTRA_FUZZ=1`` (``make fuzz``) selects the long profile.
PROFILE = settings.get_profile("astra-fuzz" if os.environ.get("ASTRA_FUZZ") == "1" else "astra-short")

CORPUS = Path(__file__).parent / "fuzz_corpus"


def corpus(protocol: str, suffix: str) -> list[Path]:
    """The kept inputs for ``protocol`` (``h1``, ``h2``): ``tests/fuzz_corpus/<protocol>/*<suffix>``."""
    return sorted((CORPUS / protocol).glob("*" + suffix))


def bytewise(data: bytes) -> list[bytes]:
    """``data`` one byte per read."""
    return [data[i:i + 1] for i in range(len(data))]


def corpus_reads(stream: bytes) -> list[list[bytes]]:
    """The reads a kept input is replayed in: whole, a byte at a time, in halves."""
    half = len(stream) // 2
    return [[stream], bytewise(stream), [stream[:half], stream[half:]]]


def cut(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    """``stream`` cut into reads at up to six random points (inside a ``@st.composite``)."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=6))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)]) if b > a]
