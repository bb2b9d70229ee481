"""llhttp as the oracle of the HTTP/1.1 fuzzer, and the rules where astra reads a request differently.

:func:`llhttp` runs a byte stream through Node's parser (via httptools) and
records what it read; :data:`STRICTER` and :data:`LAXER` are the
disagreements allowed, each with its reason (``tests/test_fuzz_h1.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httptools

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


def allowed(rules: dict[str, Rule], stream: bytes, message: Message, view: LLView,
             status: int | None) -> str | None:
    for name, rule in rules.items():
        if rule.applies(stream, message, view, status):
            return name
    return None
