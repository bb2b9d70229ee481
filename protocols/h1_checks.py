"""RFC 9112's rules for the values in a request head that are more than tokens.

The request-target's form (origin, absolute, asterisk; authority-form is
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
