"""Case-insensitive, multi-valued HTTP header fields.

HTTP field names are case-insensitive and a name may repeat (``Set-Cookie``
must, and ``Accept: a`` twice means the same as ``Accept: a, b``). A plain
``dict`` loses both properties, so requests and responses carry a
:class:`Headers`: an ordered list of ``(name, value)`` pairs with dict-style
lookups that ignore case.

Names are stored lower-cased (HTTP/2 requires lower-case names on the wire and
HTTP/1.1 does not care), values as given. Lookups are linear scans: real
messages carry a dozen fields, where a scan beats maintaining an index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

__all__ = ["VALID_HOST", "Headers", "is_token"]

HeaderPairs = Iterable[tuple[str, str]]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
#: A Host field value, or HTTP/2's ``:authority``: uri-host [":" port]
#: (RFC 9112 3.2, RFC 9113 8.3.1). No userinfo, spaces or control bytes; one
#: definition, so that both protocols refuse the same hosts.
VALID_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(:[0-9]*)?")
_known_tokens: set[str] = set()


def is_token(name: str) -> bool:
    """Is ``name`` a valid field name (an RFC 9110 token)?

    Responses reuse a handful of names, so valid ones are remembered (up to
    a bound) and the regular expression runs once per name, not per response.
    """
    if name in _known_tokens:
        return True
    if not _TOKEN.fullmatch(name):
        return False
    if len(_known_tokens) < 4096:
        _known_tokens.add(name)
    return True


class Headers:
    """An ordered multi-map of header fields with case-insensitive names.

    ``headers["content-type"]`` returns the first value (``KeyError`` when
    absent), :meth:`get_all` every value, :meth:`add` appends and
    ``headers[name] = value`` replaces all earlier values. Iterating yields
    ``(name, value)`` pairs in order, duplicates included.
    """

    __slots__ = ("_items", "_raw")

    def __init__(self, items: HeaderPairs | Mapping[str, str] | None = None) -> None:
        if items is None:
            self._items: list[tuple[str, str]] = []
        else:
            if isinstance(items, Mapping):
                items = items.items()
            self._items = [(str(n).lower(), str(v)) for n, v in items]

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]]) -> Headers:
        """Wrap pairs whose names are already lower-case (from a parser)."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    @classmethod
    def _parsed(cls, raw: list[tuple[bytes, bytes]]) -> Headers:
        """Fields as a parser read them (names lower-case already), decoded when first looked at.

        Many handlers never look at a request's headers; decoding a dozen
        names and values they will not read was a tenth of the protocol's
        work for a small request.
        """
        headers = cls.__new__(cls)
        headers._raw = raw
        return headers

    def __getattr__(self, name: str) -> list[tuple[str, str]]:
        # Called only for a slot never set: ``_items`` of headers made by _parsed, on first use.
        if name != "_items":
            raise AttributeError(name)
        items = self._items = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in self._raw]
        return items

    # -- reading -----------------------------------------------------------

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._items if key == name]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = name.lower()
        for key, _ in self._items:  # a loop, not any(genexpr): this runs twice per response
            if key == name:
                return True
        return False

    def keys(self) -> list[str]:
        """Distinct names, in order of first appearance."""
        return list(dict.fromkeys(key for key, _ in self._items))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    # -- writing -----------------------------------------------------------

    def add(self, name: str, value: str) -> None:
        self._items.append((name.lower(), str(value)))

    def __setitem__(self, name: str, value: str) -> None:
        name = name.lower()
        self._items = [(k, v) for k, v in self._items if k != name]
        self._items.append((name, str(value)))

    def setdefault(self, name: str, value: str) -> str:
        existing = self.get(name)
        if existing is not None:
            return existing
        self.add(name, value)
        return value

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        kept = [(k, v) for k, v in self._items if k != name]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def pop(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name, default)
        if name in self:
            del self[name]
        return value

    def copy(self) -> Headers:
        return Headers._trusted(list(self._items))
