"""Who the client really is behind a reverse proxy: ``Forwarded`` and ``X-Forwarded-*``, judged.

A proxy in front of the server (nginx, a load balancer) connects on the
client's behalf, so the socket's peer is the proxy. The proxy says who it
spoke to in a header: ``Forwarded`` (RFC 7239) or the older
``X-Forwarded-For`` / ``X-Forwarded-Proto``. Anybody can send those headers,
so they mean something only when the connection comes from a proxy the
operator named (:class:`TrustedProxies`, ``--forwarded-allow-ips``); from
anyone else they are left to the handler as the plain headers they are.

Each proxy appends what it saw to the right of what the client (or an
earlier proxy) sent, so the list is read right to left: entries added by
trusted proxies are skipped, and the first entry that is not a trusted
proxy is the client. Everything left of it is whatever that client chose
to write, and is ignored. An entry that names no usable address
(``unknown``, an obfuscated ``_name``, garbage) ends the walk too, and then
the socket's peer stays: a broken chain is not taken on faith.

Pure functions and one small immutable class: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from .headers import Headers
from .request import ConnectionInfo

__all__ = ["TrustedProxies", "forwarded_elements", "parse_node"]

#: What a trusted proxy may say the client's scheme was; anything else is ignored.
SCHEMES = frozenset({"http", "https"})
#: Named in ``--forwarded-allow-ips``: connections over a Unix domain socket
#: (the usual way for nginx on the same machine) have no peer address to check.
UNIX = "unix"
EVERYONE = "*"

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PAIR = re.compile(rf"[ \t]*({_TOKEN})=({_TOKEN}|\"(?:[^\"\\]|\\.)*\")[ \t]*")
_SEPARATOR = re.compile(r"[ \t]*([;,])[ \t]*")
_UNESCAPE = re.compile(r"\\(.)")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")
#: Addresses whose verdict a TrustedProxies remembers: a proxy's address repeats
#: on every request it forwards, and checking it against the networks costs microseconds.
_REMEMBERED = 1024


class Malformed(ValueError):
    """A forwarding header that does not follow its grammar: none of it is used."""


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose forwarding headers are believed (``--forwarded-allow-ips``).

    Built from a comma-separated list (or an iterable) of IP addresses, CIDR
    networks, ``unix`` (connections over a Unix domain socket) and ``*``
    (everyone: only for a server no client can reach but through the proxy).
    Empty, the default, trusts nobody and costs nothing.
    """

    networks: tuple[IPv4Network | IPv6Network, ...] = ()
    unix: bool = False
    everyone: bool = False
    _verdicts: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, spec: str | Iterable[str] | TrustedProxies | None) -> TrustedProxies:
        """``"127.0.0.1, 10.0.0.0/8, unix"`` -> TrustedProxies; raises ValueError for an entry that is none of those."""
        if isinstance(spec, TrustedProxies):
            return spec
        if spec is None:
            return cls()
        entries = spec.split(",") if isinstance(spec, str) else list(spec)
        networks = []
        unix = everyone = False
        for entry in (str(e).strip() for e in entries):
            if not entry:
                continue
            if entry == EVERYONE:
                everyone = True
            elif entry.lower() == UNIX:
                unix = True
            else:
                try:
                    networks.append(ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"forwarded_allow_ips: {entry!r} is not an IP address, a network, "
                                     f"{UNIX!r} or {EVERYONE!r}") from None
        return cls(tuple(networks), unix, everyone)

    def __bool__(self) -> bool:
        return bool(self.networks) or self.unix or self.everyone

    def trusts_peer(self, peer: tuple[str, int] | None) -> bool:
        """Is this connection's peer a proxy we believe? (None: a Unix socket's peer, which has no address.)"""
        if self.everyone:
            return True
        if peer is None:
            return self.unix
        return self.trusts(peer[0])

    def trusts(self, host: str) -> bool:
        """Is the address ``host`` (as text) one of ours?"""
        if self.everyone:
            return True
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = _in_networks(host, self.networks)
            if len(self._verdicts) >= _REMEMBERED:  # addresses from headers are the client's choice: stay bounded
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def resolve(self, info: ConnectionInfo, headers: Headers) -> ConnectionInfo:
        """The connection as the client made it, if the peer is trusted and says so; else ``info`` itself.

        ``Forwarded`` is read when present (malformed: nothing is used);
        ``X-Forwarded-For`` and ``X-Forwarded-Proto`` otherwise. When both
        kinds are present they must agree, or neither is believed: a proxy
        that sets only one kind passes the other on from the client as it
        came (nginx appends to X-Forwarded-For and leaves a client's own
        Forwarded alone), and that one must not pick the client's address.
        """
        if not self.trusts_peer(info.peer):
            return info
        forwarded, hops, protos = _forwarding_fields(headers)
        if forwarded:
            client, scheme = self._from_forwarded(forwarded)
            if hops or protos:
                x_client, x_scheme = self._from_x_forwarded(_list(hops), _list(protos))
                if (hops and x_client != client) or (protos and x_scheme != scheme):
                    return info  # two stories: one of them is the client's
        elif hops or protos:
            client, scheme = self._from_x_forwarded(_list(hops), _list(protos))
        else:
            return info
        if client is None and scheme is None:
            return info
        return ConnectionInfo(client or info.peer, info.local, scheme or info.scheme, info.tls)

    def _from_forwarded(self, values: list[str]) -> tuple[tuple[str, int] | None, str | None]:
        try:
            elements = forwarded_elements(", ".join(values))
        except Malformed:
            return None, None
        index, client = self._walk([element.get("for") for element in elements])
        if index is None:
            return None, None
        return client, _scheme(elements[index].get("proto"))

    def _from_x_forwarded(self, hops: list[str], protos: list[str]) -> tuple[tuple[str, int] | None, str | None]:
        index, client = self._walk(hops) if hops else (None, None)
        if len(protos) == 1:
            scheme = _scheme(protos[0])
        elif index is not None and len(protos) == len(hops):  # one per hop: the client's own
            scheme = _scheme(protos[index])
        else:
            scheme = None  # a list that does not line up with the hops says nothing we can use
        return client, scheme

    def _walk(self, hops: list[str | None]) -> tuple[int | None, tuple[str, int] | None]:
        """Right to left past trusted proxies: (the client's index, its address or None if unusable).

        (None, None) for an empty list. If every hop is trusted, the leftmost is the client.
        """
        index, client = None, None
        for index in range(len(hops) - 1, -1, -1):
            client = parse_node(hops[index])
            if client is None or not self.trusts(client[0]):
                break
        return index, client


def forwarded_elements(value: str) -> list[dict[str, str]]:
    """A ``Forwarded`` field value as its elements, each ``{parameter (lower case): value}``.

    Raises :class:`Malformed` for anything off the RFC 7239 grammar,
    including a parameter given twice in one element.
    """
    elements: list[dict[str, str]] = [{}]
    position, end = 0, len(value)
    while position < end:
        pair = _PAIR.match(value, position)
        if pair is not None:
            name = pair.group(1).lower()
            if name in elements[-1]:
                raise Malformed(f"{name} given twice in one element")
            text = pair.group(2)
            elements[-1][name] = _UNESCAPE.sub(r"\1", text[1:-1]) if text.startswith('"') else text
            position = pair.end()
            if position == end:
                break
        separator = _SEPARATOR.match(value, position)
        if separator is None:
            raise Malformed("not a Forwarded element")
        if separator.group(1) == ",":
            elements.append({})
        position = separator.end()
    return elements


def parse_node(node: str | None) -> tuple[str, int] | None:
    """A ``for=`` node (or an X-Forwarded-For entry) as (address, port); None if it names no address.

    ``192.0.2.1``, ``192.0.2.1:4711``, ``[2001:db8::1]``, ``[2001:db8::1]:4711``
    and a bare ``2001:db8::1`` are addresses (an obfuscated port counts as 0);
    ``unknown``, an obfuscated ``_name`` and anything else are not.
    """
    if not node or len(node) > 64:  # the longest address with a port is 47 characters
        return None
    host, port = node, ""
    if node.startswith("["):
        close = node.find("]")
        if close < 0:
            return None
        host, rest = node[1:close], node[close + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif node.count(":") == 1:  # an IPv4 address with a port (a bare IPv6 one has several colons)
        host, port = node.split(":")
    address = _address(host)
    if address is None:
        return None
    if not port:
        return address, 0
    if not _PORT.fullmatch(port):
        return None
    number = int(port) if port[0] != "_" else 0
    return (address, number) if number <= 65535 else None


@lru_cache(maxsize=1024)
def _address(text: str) -> str | None:
    """``text`` as a canonical IP address (``::1``, not ``0:0::1``), or None.

    An IPv6 zone (``fe80::1%eth0``) is refused: ``ip_address`` keeps its
    text whatever it holds, and it would reach the application and the
    access log as the client's address.
    """
    if "%" in text:
        return None
    try:
        return str(ip_address(text))
    except ValueError:
        return None


def _in_networks(host: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        address = ip_address(host)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:10.0.0.1 is 10.0.0.1
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _forwarding_fields(headers: Headers) -> tuple[list[str], list[str], list[str]]:
    """Forwarded, X-Forwarded-For and X-Forwarded-Proto, every line of each, in one pass over the fields."""
    forwarded: list[str] = []
    hops: list[str] = []
    protos: list[str] = []
    for name, value in headers:
        if name == "forwarded":
            forwarded.append(value)
        elif name == "x-forwarded-for":
            hops.append(value)
        elif name == "x-forwarded-proto":
            protos.append(value)
    return forwarded, hops, protos


def _list(values: list[str]) -> list[str]:
    """Comma-separated entries across every line of a field."""
    return [entry.strip() for value in values for entry in value.split(",")] if values else []


def _scheme(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value if value in SCHEMES else None
