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
  rules in :data:`STRICTER` or :data:`LAXER`, each written down with its reason. There is no
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from protocols import Limits

from .fuzzing import PROFILE, corpus, corpus_reads, cut
from .test_protocol_h1_strict import H1_PARSERS, Outcome, drive

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


# -- the llhttp oracle ------------------------------------------------------------------------


@dataclass
class Message:
    """One request as llhttp read it, with offsets into the stream."""

    start: int
    url: bytes = b""
    method: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # trailers included
    body: bytes = b""
    head_end: int | None = None
    end: int | None = None


@dataclass
class LLView:
    messages: list[Message]  # the last may be incomplete
    error: int | None = None  # offset of the byte llhttp refused
    reason: str = ""
    upgrade: bool = False  # llhttp stopped: CONNECT or Upgrade

    @property
    def complete(self) -> list[Message]:
        return [m for m in self.messages if m.end is not None]


class _Recorder:
    def __init__(self) -> None:
        self.offset = 0
        self.messages: list[Message] = []
        self.parser: httptools.HttpRequestParser | None = None

    def on_message_begin(self) -> None:
        self.messages.append(Message(self.offset))

    def on_url(self, url: bytes) -> None:
        self.messages[-1].url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.messages[-1].headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.messages[-1].head_end = self.offset + 1
        self.messages[-1].method = self.parser.get_method()

    def on_body(self, body: bytes) -> None:
        self.messages[-1].body += body

    def on_message_complete(self) -> None:
        self.messages[-1].end = self.offset + 1


def llhttp(stream: bytes) -> LLView:
    """llhttp's reading of ``stream``, fed a byte at a time so every event has an offset."""
    recorder = _Recorder()
    recorder.parser = parser = httptools.HttpRequestParser(recorder)
    view = LLView(recorder.messages)
    for offset in range(len(stream)):
        recorder.offset = offset
        try:
            parser.feed_data(stream[offset:offset + 1])
        except httptools.HttpParserUpgrade:
            view.upgrade = True
            break
        except httptools.HttpParserError as exc:
            view.error, view.reason = offset, str(exc)
            break
    return view


# -- where we deliberately read differently -----------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """An accepted disagreement about one request.

    ``applies(stream, message, view, status)`` looks at llhttp's reading of
    the request (``message``, with offsets into ``stream``) and at the
    status we answered (None when we accepted it).
    """

    why: str
    applies: Callable[[bytes, Message, LLView, int | None], bool]


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ ]+ HTTP/[0-9]\.[0-9]")
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(:[0-9]*)?")
_ABSOLUTE = re.compile(rb"(?i:https?)://([^/?#@:]|\[)[^/?#@]*([/?][^#]*)?")


def _fields(message: Message, name: bytes) -> list[bytes]:
    return [v for n, v in message.headers if n.lower() == name]


def _head(stream: bytes, message: Message) -> bytes:
    return stream[message.start:message.head_end or len(stream)]


def _version(stream: bytes, message: Message) -> bytes:
    line = _head(stream, message).split(b"\r\n", 1)[0]
    return line.rsplit(b" ", 1)[-1]


def _bad_request_line(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    line = _head(stream, message).split(b"\r\n", 1)[0]
    return status == 400 and _REQUEST_LINE.fullmatch(line) is None


def _bad_host(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    if status != 400:
        return False
    hosts = _fields(message, b"host")
    if _version(stream, message) != b"HTTP/1.1" and not hosts:
        return False
    return len(hosts) != 1 or _HOST.fullmatch(hosts[0]) is None


def _bad_target(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    if status != 400:
        return False
    url = message.url
    if url.startswith(b"/"):
        return False
    if url == b"*":
        return message.method != b"OPTIONS"
    return _ABSOLUTE.fullmatch(url) is None or _HOST.fullmatch(url.split(b"/")[2]) is None


def _not_just_chunked(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    codings = [c.strip().lower() for v in _fields(message, b"transfer-encoding") for c in v.split(b",")]
    if not codings:
        return False
    if codings != [b"chunked"]:
        return status == 501
    return status == 400 and _version(stream, message) == b"HTTP/1.0"


def _chunk_lines(framing: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(size digits, the rest of the line) of each chunk-size line, walking the chunks as llhttp did."""
    pos = 0
    while (end := framing.find(b"\r\n", pos)) >= 0:
        line = framing[pos:end]
        digits = re.match(rb"[0-9A-Fa-f]*", line).group()
        yield digits, line[len(digits):]
        if not digits or not int(digits, 16):
            return
        pos = end + 2 + int(digits, 16) + 2


def _strict_chunk_line(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    if status != 400 or message.head_end is None or message.end is None:
        return False
    for digits, extensions in _chunk_lines(stream[message.head_end:message.end]):
        if len(digits) > 16:
            return True
        for extension in extensions.split(b";")[1:]:
            name, equals, value = extension.partition(b"=")
            if not name or (equals and not value):
                return True
    return False


def _long_content_length(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    return status == 400 and any(len(value.strip()) > 20 for value in _fields(message, b"content-length"))


def _empty_lines_first(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    index = view.messages.index(message)
    previous_end = view.messages[index - 1].end if index else 0
    gap = stream[previous_end:message.start]
    return status == 400 and bool(gap) and not gap.strip(b"\r\n")


def _other_version(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    return status == 505 and _version(stream, message) not in (b"HTTP/1.0", b"HTTP/1.1")


def _higher_minor_version(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    line = stream[message.start:].split(b"\r\n", 1)[0]
    minor = re.fullmatch(rb"HTTP/1\.[2-9]", line.rsplit(b" ", 1)[-1]) is not None
    return minor and view.reason == "Invalid HTTP version"


def _extension_method(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    # llhttp stopped inside the method, or at the space after it.
    method = stream[message.start:].split(b" ", 1)[0]
    return _TOKEN.fullmatch(method) is not None and view.error <= message.start + len(method)


def _normalised_content_length(stream: bytes, message: Message, view: LLView, status: int | None) -> bool:
    # llhttp stopped inside a Content-Length value that lists one length more than once.
    head = stream[message.start:view.error + 1]
    line = head.rsplit(b"\r\n", 1)[-1]
    name, _, value = line.partition(b":")
    if name.lower() != b"content-length":
        return False
    whole = stream[message.start + len(head) - len(line):].split(b"\r\n", 1)[0].partition(b":")[2]
    lengths = {part.strip() for part in whole.split(b",")}
    return len(lengths) == 1 and lengths.pop().isdigit()


#: We refuse, llhttp accepts.
STRICTER: dict[str, Rule] = {
    "request line": Rule(
        "RFC 9112 3: method SP request-target SP HTTP-version, one space each. llhttp also takes a "
        "request line without a version (HTTP/0.9's shape, then header fields) and runs of spaces.",
        _bad_request_line),
    "content-length digits": Rule(
        "A Content-Length of more than 20 digits is refused (h11's bound, 10^20 bytes, is past any body "
        "limit, and it keeps int() away from unbounded input), leading zeros or not; llhttp reads the value.",
        _long_content_length),
    "empty lines first": Rule(
        "RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request line; h11 refuses "
        "it ('no request line received'), and so do we, as before this change: clients have not sent "
        "one since RFC 2616, and a bare LF there is a bare LF. llhttp skips any number of CR and LF.",
        _empty_lines_first),
    "version": Rule(
        "A version other than HTTP/1.0 or 1.1 in an HTTP/1 request line gets 505 (HTTP/2.0 there is "
        "not HTTP/2, and HTTP/0.9 has no header fields); llhttp reads HTTP/0.9 and 2.0 request lines as HTTP/1.",
        _other_version),
    "host": Rule(
        "RFC 9112 3.2: an HTTP/1.1 request needs exactly one Host, and it must be uri-host[:port]; "
        "llhttp leaves Host to the application.", _bad_host),
    "connect": Rule(
        "An origin server does not tunnel: CONNECT gets 405. llhttp parses it and hands over.",
        lambda stream, message, view, status: status == 405 and message.method == b"CONNECT"),
    "target form": Rule(
        "RFC 9112 3.2: origin-form, absolute-form (http/https, a host, no userinfo or fragment), or "
        "'*' for OPTIONS; llhttp accepts any URL-ish target with any method.", _bad_target),
    "transfer-encoding": Rule(
        "Only a single 'chunked' coding is decoded here (RFC 9112 6.1: 501 for codings not understood), "
        "and never in HTTP/1.0 (RFC 9112 6.1 tells a server to close after reading such a body, which is "
        "how smuggling via 1.0 downgrades works); llhttp accepts a list ending in chunked.", _not_just_chunked),
    "chunk line": Rule(
        "A chunk-size longer than 16 hex digits, or a chunk extension with an empty name or an empty "
        "value, breaks RFC 9112 7.1's grammar; llhttp accepts them (it bounds the size's value, not its digits).",
        _strict_chunk_line),
}

#: We accept, llhttp refuses.
LAXER: dict[str, Rule] = {
    "minor version": Rule(
        "RFC 9112 2.3: a recipient SHOULD read a higher minor version (HTTP/1.2) as the highest it "
        "implements; we do (as 1.1, without keep-alive). llhttp refuses any version but 0.9, 1.0, 1.1, 2.0.",
        _higher_minor_version),
    "extension method": Rule(
        "RFC 9110 9.1: a method is any token, and a server answers those it does not implement "
        "(the application's 405/501). llhttp knows a fixed list of methods and refuses the rest.",
        _extension_method),
    "content-length list": Rule(
        "RFC 9110 8.6 lets a recipient read 'Content-Length: 5, 5' as 5 (h11 does). The values agree, "
        "so no two readings of the body's length exist; llhttp refuses the comma.", _normalised_content_length),
}


def _allowed(rules: dict[str, Rule], stream: bytes, message: Message, view: LLView,
             status: int | None) -> str | None:
    for name, rule in rules.items():
        if rule.applies(stream, message, view, status):
            return name
    return None


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
                rule = _allowed(STRICTER, stream, message, view, ours.failed)
                assert rule, f"we refuse request {index} ({ours.failed}), llhttp accepts it"
                used.append(rule)
            break  # ours incomplete or stopped: nothing more to compare
        if view.error is not None and served is not None:
            rule = _allowed(LAXER, stream, message, view, None)
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
