"""The ``Date`` header value, formatted at most once a second."""

from __future__ import annotations

import time
from email.utils import formatdate

#: (second, its text), replaced as one tuple: threads share it, and two globals written one
#: after the other could pair a second with its neighbour's text once the GIL no longer
#: keeps the two stores together (free-threaded CPython).
_cache = (-1, "")


def http_date() -> str:
    global _cache
    now = int(time.time())
    second, value = _cache
    if now != second:
        value = formatdate(now, usegmt=True)
        _cache = (now, value)
    return value
