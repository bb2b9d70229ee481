"""Fuzzing HTTP/1.1 request parsing, with llhttp as a differential oracle.

Hypothesis builds byte streams of pipelined requests (random methods,
targets, header fields, Content-Length and chunked bodies with random chunk
extensions and trailers), mutates some of them in the ways request smuggling
is made of (bare LF or CR, obsolete line folding, a second or conflicting
Content-Length, Transfer-Encoding beside Content-Length, huge chunk sizes,
NUL and control bytes, bytes deleted or repeated), and cuts each stream into
reads at random points. Each stream goes through :class:`HTTP11Connection`
(via :func:`~tests.test_protocol_h1_strict.drive`, which answers every
request) and is checked for:

- **no crash and no hang**: the only outcomes are requests served, an error
  answer of the server's own, or waiting for more bytes, within a bounded
  number of events;
- **reads do not matter**: the stream fed whole and fed in pieces is served
  identically;
- **the parser does not matter**: served through each HTTP/1 parser
  (:data:`~tests.test_protocol_h1_strict.H1_PARSERS`: h11's adapter and
  llhttp's), whole and in pieces, the stream gives the same requests, the same
  bodies and the same status;
- **the same reading as llhttp** (Node's parser, through httptools): request
  by request, if both accept a request they agree on its method, target and
  body, which is where the first request ends and so what the next one is;
  if one accepts and the other refuses, the disagreement must be one of the
  rules in :data:`~tests.h1_oracle.STRICTER` or :data:`~tests.h1_oracle.LAXER`, each written down with its reason. There is no
  rule for two different readings of an accepted request: that is the
  desync a smuggling attack needs.

Runs are short by default (``make test``). ``ASTRA_FUZZ=1`` (``make fuzz``;
``ASTRA_FUZZ_EXAMPLES`` sets the examples per test, 5000 by default)
selects the long profile. Interesting inputs live in
``tests/fuzz_corpus/h1/*.http`` (raw bytes) and are replayed on every run: to
keep a failure found by a long run, write its ``stream`` bytes to a new file
there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from protocols import Limits

from .fuzzing import PROFILE, corpus, corpus_reads, cut
from .h1_oracle import LAXER, STRICTER, allowed, llhttp
from .h1_drive import H1_PARSERS, Outcome, drive

# -- strategies: valid requests ---------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Names whose meaning the generator controls; random names must not hit them by chance.
_RESERVED = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te", "trailer"}

tokens = st.text(TCHAR, min_size=1, max_size=8).map(str.encode)
field_names = tokens.filter(lambda name: name.lower().decode() not in _RESERVED)
_VCHAR = "".join(map(chr, range(0x21, 0x7F)))
field_values = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=4).map(lambda v: b"x" + bytes(0x80 | c for c in v)),  # obs-text
    st.text(_VCHAR, min_size=1, max_size=12).map(str.encode),
    st.tuples(st.text(_VCHAR, min_size=1, max_size=5), st.text(_VCHAR + " \t", max_size=6),
              st.text(_VCHAR, min_size=1, max_size=5)).map(lambda t: "".join(t).encode()),
)
hosts = st.sampled_from([b"example.com", b"example.com:8080", b"127.0.0.1", b"[::1]:80", b"a-b.c_d"])
_PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%"
origin_targets = st.tuples(
    st.lists(st.text(_PCHAR, max_size=6), max_size=3),
    st.one_of(st.none(), st.text(_PCHAR + "/?", max_size=8)),
).map(lambda t: ("/" + "/".join(t[0]) + ("" if t[1] is None else "?" + t[1])).encode())
targets = st.one_of(
    origin_targets, origin_targets, origin_targets,
    st.tuples(st.sampled_from([b"http://", b"https://", b"HTTP://"]), hosts, origin_targets).map(b"".join),
)
methods = st.sampled_from([b"GET", b"GET", b"POST", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"])

extensions = st.lists(
    st.tuples(tokens, st.one_of(
        st.none(), tokens,
        st.text(_VCHAR.replace('"', "").replace("\\", "") + " \t", max_size=6).map(lambda v: b'"' + v.encode() + b'"'),
    )).map(lambda ext: b";" + ext[0] + (b"" if ext[1] is None else b"=" + ext[1])),
    max_size=3,
).map(b"".join)


@st.composite
def chunk_sizes(draw: st.DrawFn, size: int) -> bytes:
    digits = "%x" % size
    digits = draw(st.sampled_from([digits, digits.upper()]))
    return (draw(st.sampled_from(["", "0", "000"])) + digits).encode()


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(framing, data) of a valid chunked body."""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=24), max_size=4))
    out = []
    for data in chunks:
        out.append(draw(chunk_sizes(len(data))) + draw(extensions) + b"\r\n" + data + b"\r\n")
    out.append(draw(st.sampled_from([b"0", b"000"])) + draw(extensions) + b"\r\n")
    for name, value in draw(st.lists(st.tuples(field_names, field_values), max_size=2)):
        out.append(name + b": " + value + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out), b"".join(chunks)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One valid request, with header fields in random order."""
    method = draw(methods)
    target = draw(st.one_of(targets, st.just(b"*"))) if method == b"OPTIONS" else draw(targets)
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.1", b"1.0"]))
    fields = draw(st.lists(st.tuples(field_names, field_values), max_size=4))
    if version == b"1.1" or draw(st.booleans()):
        fields.append((draw(st.sampled_from([b"Host", b"host", b"HOST"])), draw(hosts)))
    framing = draw(st.sampled_from(["none", "length", "chunked"] if version == b"1.1" else ["none", "length"]))
    body = b""
    if framing == "length":
        data = draw(st.binary(max_size=40))
        fields.append((b"Content-Length", b"%d" % len(data)))
        body = data
    elif framing == "chunked":
        fields.append((draw(st.sampled_from([b"Transfer-Encoding", b"transfer-encoding"])),
                       draw(st.sampled_from([b"chunked", b"Chunked"]))))
        body = draw(chunked_bodies())[0]
    if draw(st.integers(0, 9)) == 0:
        fields.append((b"Connection", b"close"))
    fields = draw(st.permutations(fields))
    head = b"%s %s HTTP/%s\r\n" % (method, target, version)
    return head + b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n" + body


# -- strategies: mutations -------------------------------------------------------------------


def _at(stream: bytes, needle: bytes, index: int) -> int:
    """Offset of occurrence ``index`` (modulo their number) of ``needle``, or -1."""
    offsets = [m.start() for m in re.finditer(re.escape(needle), stream)]
    return offsets[index % len(offsets)] if offsets else -1


Mutation = Callable[[bytes, int, int], bytes]  # (stream, where, which variant) -> stream


def _replace(needle: bytes, *variants: bytes) -> Mutation:
    """Replace one occurrence of ``needle`` with one of ``variants``."""
    def mutate(stream: bytes, index: int, extra: int) -> bytes:
        at = _at(stream, needle, index)
        new = variants[extra % len(variants)]
        return stream if at < 0 else stream[:at] + new + stream[at + len(needle):]
    return mutate


def _insert_header(*lines: bytes) -> Mutation:
    """Add one of ``lines`` as a header field line of one of the requests."""
    def mutate(stream: bytes, index: int, extra: int) -> bytes:
        at = _at(stream, b" HTTP/1.", index)
        at = stream.find(b"\r\n", at) if at >= 0 else -1
        return stream if at < 0 else stream[:at + 2] + lines[extra % len(lines)] + b"\r\n" + stream[at + 2:]
    return mutate


def _insert(*variants: bytes) -> Mutation:
    """Insert one of ``variants`` anywhere."""
    def mutate(stream: bytes, index: int, extra: int) -> bytes:
        at = index % (len(stream) + 1)
        return stream[:at] + variants[extra % len(variants)] + stream[at:]
    return mutate


def _replace_byte(stream: bytes, index: int, extra: int) -> bytes:
    at = index % (len(stream) or 1)
    return stream[:at] + bytes([extra % 256]) + stream[at + 1:]


def _delete(stream: bytes, index: int, extra: int) -> bytes:
    at = index % (len(stream) + 1)
    return stream[:at] + stream[at + 1 + extra % 3:]


def _repeat(stream: bytes, index: int, extra: int) -> bytes:
    at = index % (len(stream) + 1)
    return stream[:at] + stream[at:at + 1 + extra % 8] + stream[at:]


_HUGE_SIZES = [b"ffffffffffffffff", b"1" + b"0" * 16, b"f" * 17, b"f" * 40, b"0" * 20 + b"5"]
_VERSIONS = [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.10", b"http/1.1", b"HTTP/1.1 ", b"HTTP/11"]
_TE_VALUES = [b"chunked", b" chunked", b"chunked, identity", b"identity, chunked", b"CHUNKED", b"xchunked",
              b"chunked;q=1"]

MUTATIONS: dict[str, Mutation] = {
    "bare LF": _replace(b"\r\n", b"\n"),
    "bare CR": _replace(b"\r\n", b"\r"),
    "LF CR": _replace(b"\r\n", b"\n\r"),
    "obs-fold": _replace(b"\r\n", b"\r\n folded\r\n", b"\r\n\tfolded\r\n"),
    "space before colon": _replace(b": ", b" : "),
    "NUL": _insert(b"\x00"),
    "control byte": _insert(*(bytes([c]) for c in (1, 8, 11, 12, 27, 127))),
    "byte replaced": _replace_byte,
    "bytes deleted": _delete,
    "bytes repeated": _repeat,
    "extra Content-Length": _insert_header(*(b"Content-Length: %d" % n for n in range(12))),
    "Content-Length list": _insert_header(b"Content-Length: 0, 0", b"Content-Length: 1, 0", b"Content-Length: 2,2"),
    "Content-Length zeros": _replace(b"Content-Length: ", b"Content-Length: 0", b"Content-Length: " + b"0" * 20),
    "Transfer-Encoding": _insert_header(*(b"Transfer-Encoding: " + value for value in _TE_VALUES)),
    "huge chunk size": _replace(b"\r\n\r\n", *(b"\r\n\r\n" + size + b"\r\n" for size in _HUGE_SIZES)),
    "chunk extension": _replace(b"\r\n", b";eee=\x01\r\n", b";\r\n", b";a=\r\n", b" ;a\r\n"),
    "version": _replace(b"HTTP/1.1", *_VERSIONS),
    "empty line first": _replace(b"\r\n\r\n", b"\r\n\r\n\r\n", b"\r\n\r\n\n", b"\r\n\r\n\r\n\r\n"),
    "Expect": _insert_header(b"Expect: 100-continue"),
    "Upgrade": _insert_header(b"Upgrade: websocket\r\nConnection: Upgrade"),
    "CONNECT": _replace(b"GET ", b"CONNECT "),
    "other target": _replace(b" /", b" *", b" example.com:80/", b" ftp://example.com/", b" http://u@example.com/"),
}

mutations = st.lists(
    st.tuples(st.sampled_from(sorted(MUTATIONS)), st.integers(0, 10_000), st.integers(0, 10_000)), max_size=3,
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A stream of one to three requests, mutated or not, and the reads it arrives in."""
    stream = b"".join(draw(st.lists(requests(), min_size=1, max_size=3)))
    applied = draw(mutations)
    for name, index, extra in applied:
        stream = MUTATIONS[name](stream, index, extra)
    note(f"mutations: {[name for name, _, _ in applied]}")
    return stream, cut(draw, stream)


# -- the checks -------------------------------------------------------------------------------


def _summary(outcome: Outcome) -> tuple:
    partial = outcome.partial and (outcome.partial.method, outcome.partial.target, outcome.partial.body)
    return [(s.method, s.target, s.body) for s in outcome.served], outcome.failed, partial


def compare_with_llhttp(stream: bytes, ours: Outcome) -> list[str]:
    """Walk the requests both parsers read; return the allow-list rules used.

    Fails when both accept a request but read it differently, or when one
    refuses what the other accepts and no rule explains it.
    """
    view = llhttp(stream)
    used = []
    for index, message in enumerate(view.messages):
        served = ours.served[index] if index < len(ours.served) else None
        refused = served is None and index == len(ours.served) and ours.failed is not None
        # An Upgrade request (we serve it as a plain one: no upgrade hook here)
        # ends llhttp's parsing, sometimes before its body: then only the head compares.
        head_only = view.upgrade and index == len(view.messages) - 1 and message.end == message.head_end
        if message.end is not None:  # llhttp accepts this request
            if served is not None:
                ours_read = (served.method.encode(), served.target.encode("latin-1"), served.body)
                theirs = (message.method, message.url, message.body)
                if head_only:
                    ours_read, theirs = ours_read[:2], theirs[:2]
                assert ours_read == theirs, f"request {index} read differently"
                if view.upgrade and index == len(view.messages) - 1:
                    break  # llhttp stops after an upgrade; we went on
                continue
            if refused and head_only and ours.partial is not None:
                break  # we refused its body, which llhttp never read
            if refused:
                rule = allowed(STRICTER, stream, message, view, ours.failed)
                assert rule, f"we refuse request {index} ({ours.failed}), llhttp accepts it"
                used.append(rule)
            break  # ours incomplete or stopped: nothing more to compare
        if view.error is not None and served is not None:
            rule = allowed(LAXER, stream, message, view, None)
            assert rule, f"we accept request {index}, llhttp refuses it: {view.reason}"
            used.append(rule)
        break  # both refuse, or one of us needs more bytes
    return used


def check(stream: bytes, pieces: list[bytes]) -> list[str]:
    whole = drive([stream], Limits(http1_parser=H1_PARSERS[0]))
    summary = _summary(whole)
    for parser in H1_PARSERS:
        limits = Limits(http1_parser=parser)
        if parser != H1_PARSERS[0]:
            assert _summary(drive([stream], limits)) == summary, f"{parser} reads the stream differently"
        assert _summary(drive(pieces, limits)) == summary, f"the reads changed the outcome ({parser})"
    if whole.failed is not None:
        assert whole.closed
    return compare_with_llhttp(stream, whole)


@PROFILE
@given(streams())
def test_fuzzed_streams(case: tuple[bytes, list[bytes]]) -> None:
    stream, pieces = case
    note(f"stream: {stream!r}")
    check(stream, pieces)


@settings(PROFILE, max_examples=PROFILE.max_examples // 2)
@given(streams(), st.sampled_from([64, 128, 512]))
def test_fuzzed_streams_under_small_limits(case: tuple[bytes, list[bytes]], limit: int) -> None:
    # Tight limits reach the budget and head-size paths; no oracle, llhttp has no such limits.
    # Which limit a stream crosses first can depend on the reads, so across reads only
    # acceptance must agree; across parsers, given the same reads, everything must.
    stream, pieces = case
    outcomes = {}
    for parser in H1_PARSERS:
        limits = Limits(max_header_bytes=limit, max_body_bytes=limit, http1_parser=parser)
        whole, split = drive([stream], limits), drive(pieces, limits)
        assert (whole.served, whole.failed is None) == (split.served, split.failed is None)
        outcomes[parser] = _summary(whole), _summary(split)
    first = outcomes[H1_PARSERS[0]]
    assert all(outcome == first for outcome in outcomes.values()), outcomes


@pytest.mark.parametrize("path", corpus("h1", ".http"), ids=lambda p: p.stem)
def test_corpus(path: Path) -> None:
    stream = path.read_bytes()
    for pieces in corpus_reads(stream):
        check(stream, pieces)


def test_the_corpus_is_there() -> None:
    assert len(corpus("h1", ".http")) >= 10
