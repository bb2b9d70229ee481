"""TLS as a layer of bytes: ciphertext in, plaintext out, and back.

Python's ``ssl`` can run TLS on two memory buffers (``ssl.MemoryBIO``)
instead of a socket: what the client sent goes into one, what must go back
comes out of the other, and nothing here ever waits. So TLS is sans-IO like
the HTTP protocols above it, and the same :class:`TLSSession` sits under a
thread's blocking socket, a reactor's non-blocking one and an event loop's
stream: each runtime's transport only moves its bytes (see
``runtimes/_tls.py`` and ``runtimes/_async/tls.py``).

Policy lives here, once:

- **TLS 1.2 at least**, and for 1.2 only forward-secret AEAD suites (ECDHE
  with AES-GCM or ChaCha20): what RFC 9113 9.2 asks of HTTP/2, and what
  every current browser offers. TLS 1.3's suites are all of that kind.
- **Renegotiation off** (a client could otherwise make the server repeat
  its most expensive step at will) and no compression (CRIME).
- **ALPN** offers ``h2`` and ``http/1.1`` (or one of them, as ``http`` says)
  in the server's order; the protocol is chosen by what was agreed, not by
  sniffing the first bytes (see ``negotiation.py``).
- **SNI**: the name the client asked for is kept and handed to the handler.
- **Client certificates** (mTLS): none, optional or required, checked
  against ``ca_certs``.
- **Plain HTTP on the TLS port** gets a plain 400 saying so, as nginx does,
  instead of a handshake failure the client cannot read.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass
from typing import Any

from .errors import ClientDisconnected
from .h1_wire import error_response_bytes
from .request import TLSInfo

__all__ = ["ALPN", "ClientCertificates", "TLSSession", "TLSSettings"]

#: ALPN names offered, in the server's order of preference, per ``Config.http``.
ALPN = {"auto": ("h2", "http/1.1"), "1": ("http/1.1",), "2": ("h2",)}

#: TLS 1.2 suites: ECDHE key exchange (forward secrecy) and an AEAD cipher only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

#: The first byte of a TLS handshake record; an ASCII letter there is an HTTP method instead.
_HANDSHAKE_RECORD = 0x16
_PLAIN_HTTP = error_response_bytes(400, "this port speaks TLS: use https://")
_READ_SIZE = 256 * 1024


class ClientCertificates(str, enum.Enum):
    """Whether a client must prove who it is with a certificate (mutual TLS)."""

    NONE = "none"
    OPTIONAL = "optional"  # asked for, checked if sent; a client without one is served too
    REQUIRED = "required"  # no certificate signed by ``ca_certs``: no handshake

    def __str__(self) -> str:
        return self.value


_VERIFY = {ClientCertificates.NONE: ssl.CERT_NONE, ClientCertificates.OPTIONAL: ssl.CERT_OPTIONAL,
           ClientCertificates.REQUIRED: ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class TLSSettings:
    """A server's certificate and what it asks of clients. Wrong files fail here, at configuration."""

    certfile: str
    #: The private key, if not in ``certfile``; ``password`` if it is encrypted.
    keyfile: str | None = None
    password: str | None = None
    #: Certificate authorities whose client certificates are accepted (with ``client_certificates``).
    ca_certs: str | None = None
    client_certificates: ClientCertificates = ClientCertificates.NONE
    #: Handshakes in progress at once, server-wide (per process): a connection
    #: arriving past it is closed before its handshake. A handshake costs
    #: the server a key exchange and tens of KiB, and a client can start one
    #: for the price of a few bytes and leave it hanging until the head timeout.
    max_handshakes: int = 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_certificates", ClientCertificates(self.client_certificates))
        if self.client_certificates is not ClientCertificates.NONE and not self.ca_certs:
            raise ValueError(f"client certificates {self.client_certificates}: ca_certs must name the "
                             "authorities that sign them")
        if self.max_handshakes < 1:
            raise ValueError("max_handshakes must be at least 1")
        self.context("auto")  # a missing file, a wrong password, a key that is not the certificate's

    def context(self, http: str) -> ssl.SSLContext:
        """A server context with this policy, offering the ALPN names ``http`` allows."""
        ctx = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.set_ciphers(TLS12_CIPHERS)
        ctx.cipher_codes = {suite["name"]: suite["id"] & 0xFFFF for suite in ctx.get_ciphers()}
        ctx.load_cert_chain(self.certfile, self.keyfile, self.password)
        ctx.certificate_pem = _first_certificate(self.certfile)
        if self.ca_certs:
            ctx.load_verify_locations(self.ca_certs)
        ctx.verify_mode = _VERIFY[self.client_certificates]
        ctx.set_alpn_protocols(list(ALPN[http]))
        ctx.sslobject_class = _ServerSide
        ctx.sni_callback = _remember_server_name
        return ctx


class _ServerContext(ssl.SSLContext):
    """A server context that also knows, for :class:`TLSInfo`, what ``ssl`` does not say.

    OpenSSL names suites its own way ("ECDHE-ECDSA-AES128-GCM-SHA256");
    the IANA number is the name every other tool agrees on. And an
    ``SSLObject`` cannot show the certificate it presented.
    """

    cipher_codes: dict[str, int]
    certificate_pem: str | None


def _first_certificate(certfile: str) -> str | None:
    """The server's own certificate, as PEM: the first in ``certfile`` (a chain may follow it)."""
    with open(certfile, encoding="ascii", errors="replace") as f:
        text = f.read()
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        return None
    return text[begin:end + len("-----END CERTIFICATE-----")] + "\n"


class _ServerSide(ssl.SSLObject):
    """An SSLObject that remembers the name the client asked for (SNI)."""

    requested_name: str | None = None


def _remember_server_name(tls: Any, name: str | None, context: ssl.SSLContext) -> None:
    tls.requested_name = name  # None: the client sent no SNI (an IP address, or an old client)


class TLSSession:
    """One server-side TLS connection on memory buffers.

    Feed it what the client sent (:meth:`receive`, which returns the
    plaintext that completes, if any) and send what :meth:`data_to_send`
    returns after every call: handshake messages, alerts and encrypted
    responses all come out there, in order. Until :attr:`established`,
    plaintext can be neither read nor written.
    """

    __slots__ = ("_tls", "_incoming", "_outgoing", "established", "ended", "failure", "_closing",
                 "_heard", "_refusal", "_info")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        #: No more plaintext will come: the client ended TLS or the connection, or the handshake failed.
        self.ended = False
        #: Why the handshake failed (or None): for a debug log, never for the client.
        self.failure: str | None = None
        self._closing = False
        self._heard = False  # any byte yet: the first ones tell a ClientHello from plain HTTP
        self._refusal = b""  # plain HTTP's 400, sent as it is
        self._info: TLSInfo | None = None

    def receive(self, data: bytes) -> bytes | None:
        """Bytes from the client (``b""`` at its end of stream) -> the plaintext they complete.

        Returns plaintext, ``b""`` once no more will come (see :attr:`ended`),
        or None when these bytes complete nothing yet (a handshake half
        received, a record cut across reads).
        """
        if self.ended:
            return b""
        if data:
            if not self._heard:
                self._heard = True
                if data[0] != _HANDSHAKE_RECORD and data[:1].isalpha():
                    return self._fail("plain HTTP on the TLS port", refusal=_PLAIN_HTTP)
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        if not self.established and not self._handshake():
            return b"" if self.ended else None
        return self._read()

    def _handshake(self) -> bool:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except (ssl.SSLError, ValueError) as exc:  # garbage, a refused certificate, a dropped client
            self._fail(str(exc))
            return False
        self.established = True
        return True

    def _read(self) -> bytes | None:
        chunks = []
        try:
            while chunk := self._tls.read(_READ_SIZE):
                chunks.append(chunk)
            self.ended = True  # an empty read: the client's close_notify
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, ValueError):  # end of stream without close_notify, or a broken record
            self.ended = True
        if chunks:
            return b"".join(chunks)  # a close that came with them is b"" on the next call
        return b"" if self.ended else None

    def _fail(self, why: str, refusal: bytes = b"") -> bytes:
        self.ended = True
        self.failure = why
        self._refusal = refusal
        return b""

    def send(self, data: bytes | memoryview | bytearray) -> None:
        """Encrypt plaintext for the client (then :meth:`data_to_send` holds it).

        Raises ClientDisconnected before the handshake has finished (a 408
        for a client that never finished it has nobody to read it) or
        after :meth:`close`.
        """
        if not self.established or self._closing:
            raise ClientDisconnected("no TLS session to send on")
        try:
            self._tls.write(data)
        except (ssl.SSLError, ValueError) as exc:
            raise ClientDisconnected(str(exc)) from None

    def close(self) -> None:
        """End TLS politely: a close_notify alert goes out with :meth:`data_to_send`. Once."""
        if self._closing:
            return
        self._closing = True
        if self.established:
            try:
                self._tls.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError, ValueError):
                pass  # the alert is queued; the client's reply is not waited for

    @property
    def has_output(self) -> bool:
        """Is anything waiting in :meth:`data_to_send`?"""
        return bool(self._refusal) or self._outgoing.pending > 0

    def data_to_send(self) -> bytes:
        """What must go to the client now, in order (empty if nothing)."""
        if self._refusal:
            refusal, self._refusal = self._refusal, b""
            return refusal
        return self._outgoing.read()

    @property
    def alpn(self) -> str | None:
        """The protocol agreed by ALPN (``"h2"``, ``"http/1.1"``), or None if the client offered none."""
        return self._tls.selected_alpn_protocol() if self.established else None

    def details(self) -> TLSInfo | None:
        """What the handshake settled, for ``request.connection.tls``; None before it finished."""
        if not self.established:
            return None
        if self._info is None:
            tls = self._tls
            version, cipher = tls.version() or "", (tls.cipher() or ("",))[0]
            client = tls.getpeercert() or None
            self._info = TLSInfo(
                version=version, cipher=cipher, alpn=tls.selected_alpn_protocol(),
                server_name=tls.requested_name, client_certificate=client,
                version_code=_VERSION_CODES.get(version),
                cipher_code=getattr(tls.context, "cipher_codes", {}).get(cipher),
                client_certificate_chain=_client_chain(tls) if client else (),
                client_certificate_name=_rfc4514(client["subject"]) if client else None,
                server_certificate=getattr(tls.context, "certificate_pem", None))
        return self._info


#: TLS versions as their wire numbers (RFC 8446 keeps 1.3's at 0x0304).
_VERSION_CODES = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
#: RFC 4514's short names for the attributes ``getpeercert()`` spells out.
_SHORT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
                "streetAddress": "STREET", "domainComponent": "DC", "userId": "UID"}


def _client_chain(tls: ssl.SSLObject) -> tuple[str, ...]:
    """The client's certificates as PEM: the chain it sent (Python 3.13+), else its own alone."""
    sent = getattr(tls, "get_unverified_chain", None)
    ders = sent() if sent else [tls.getpeercert(binary_form=True)]
    return tuple(ssl.DER_cert_to_PEM_cert(der) for der in ders if der)


def _rfc4514(subject: tuple) -> str:
    """A certificate subject as RFC 4514 text: most specific part first, specials escaped."""
    def escape(value: str) -> str:
        value = "".join("\\" + c if c in ',+"\\<>;' else "\\00" if c == "\0" else c for c in value)
        if value[:1] in ("#", " "):
            value = "\\" + value
        if value.endswith(" ") and not value.endswith("\\ "):
            value = value[:-1] + "\\ "
        return value

    return ",".join("+".join(f"{_SHORT_NAMES.get(name, name)}={escape(value)}" for name, value in part)
                    for part in reversed(subject))
