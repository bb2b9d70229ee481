"""RFC 9112's rules for the values in a request head that are more than tokens.

The head's syntax (size, bare CR or LF, obsolete folding, control characters),
the request-target's form (origin, absolute, asterisk; authority-form is
CONNECT's, which an origin server refuses) and Content-Length. Split from
``http11`` so that the connection reads as the state machine it is; the
rules here are pure functions of the bytes, with no state of their own.
"""

from __future__ import annotations

import re

from .errors import ProtocolError
from .headers import VALID_HOST as _VALID_HOST
from .response import CONNECT_REFUSAL

__all__ = ["connect_refused", "content_length_value", "other_target_form"]

# Absolute-form request-target: scheme, authority (no userinfo), then an
# optional path and query; never a fragment (RFC 9112 3.2.2, RFC 9110 4.2).
_ABSOLUTE_FORM = re.compile(rb"(?i:https?)://([^/?#@]+)([/?][^#]*)?")


def connect_refused() -> ProtocolError:
    """CONNECT's answer: :data:`~.response.CONNECT_REFUSAL`, as on HTTP/2 (it says why Allow is empty)."""
    error = ProtocolError(CONNECT_REFUSAL.reason, status=CONNECT_REFUSAL.status)
    error.headers.update(CONNECT_REFUSAL.headers)
    return error


def other_target_form(method: bytes, target: bytes) -> bytes | None:
    """Check a request-target that is not origin-form (RFC 9112 3.2); return its authority, if any.

    Absolute-form (``http://host/path``) is accepted from any client, as RFC
    9112 3.2.2 requires, with an ``http`` or ``https`` scheme, a valid
    non-empty host and no userinfo; the authority it names is returned so the
    caller can make it the Host. Asterisk-form (``*``) is OPTIONS' alone.
    Authority-form belongs to CONNECT, refused before this. Anything else
    (``foo``, ``../x``) would reach a handler as a path that is not one: 400.
    """
    if target == b"*":
        if method != b"OPTIONS":
            raise ProtocolError("the asterisk request-target is only for OPTIONS")
        return None
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        raise ProtocolError("invalid request-target")
    authority = match.group(1)
    if not _VALID_HOST.fullmatch(authority) or authority.startswith(b":"):
        raise ProtocolError("invalid authority in the request-target")
    return authority


def content_length_value(value: bytes, previous: int | None) -> int:
    """A Content-Length value, checked here rather than trusted to the parser.

    Repeats of one value are allowed (RFC 9110 8.6), different values are not.
    """
    if not value.isdigit():
        raise ProtocolError("invalid Content-Length")
    length = int(value)
    if previous is not None and previous != length:
        raise ProtocolError("conflicting Content-Length headers")
    return length


# Control characters but HTAB (RFC 9110 5.5: field values are visible characters,
# spaces and tabs; the request line has no room for any), searched for once the
# CRLF line endings are removed, so a CR or LF found is a bare one.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# A field line continued on the next (RFC 9112 5.2: a server rejects it).
_OBSOLETE_FOLD = re.compile(rb"\n[ \t]")


def check_head_syntax(buffered: bytes, limit: int) -> None:
    """Refuse an oversized head, bare CR/LF line endings and obsolete line folding in
    ``buffered`` (the unparsed bytes, a head first) before any parser sees them."""
    end = buffered.find(b"\r\n\r\n")
    if end < 0 and b"\n" not in buffered and b"\r" not in buffered:
        if len(buffered) > limit:
            raise ProtocolError("request head too large", status=431)
        return
    # Measured here whether the head is complete or not: a parser may bound
    # only an incomplete one, and one arriving whole in a read escapes that.
    # A complete head counts its blank line, so that a head cut short by a
    # read is never over the limit when the whole of it is not.
    if (len(buffered) if end < 0 else end + 4) > limit:
        raise ProtocolError("request head too large", status=431)
    head = buffered if end < 0 else buffered[: end + 2]
    stripped = head.replace(b"\r\n", b"")
    if end < 0 and head.endswith(b"\r"):
        stripped = stripped[:-1]  # half of a CRLF still in flight
    control = _CONTROL.search(stripped)  # one scan for CR, LF and the rest
    if control is not None:
        if control.group() in b"\r\n":
            raise ProtocolError("bare CR or LF in request head")
        raise ProtocolError("control character in request head")  # h11 lets them into field values
    if _OBSOLETE_FOLD.search(head):  # one scan: two ``in`` tests cost three times as much
        raise ProtocolError("obsolete line folding in request head")
