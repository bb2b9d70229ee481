"""Listening sockets: binding them (TCP and Unix), and taking connections off their backlogs.

Out of ``common.py`` because it is the one part of a runtime's set-up that
talks to the kernel about addresses: the Unix-socket file's life (a stale
one replaced, ours removed), the open-file limit raised to what the
connections will need, and two ways of accepting, one per GIL situation
(:func:`accept_backlog` for a reactor, :func:`accept_descriptors` for a
thread that must not let go of the GIL).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import socket
import stat
import time
from collections.abc import Iterator, Mapping
from typing import Any

from .common import Address, Config, UnixAddress, check_unix_path, logger

__all__ = ["accept_backlog", "accept_descriptors", "bind_listeners", "bind_unix"]


def bind_listeners(config: Config, inherited: Mapping[Address, socket.socket] | None = None) -> list[socket.socket]:
    """A listening socket for each of ``config.addresses``.

    ``inherited``: sockets already listening (bound by a parent process
    before it forked its workers), used as they are for their addresses.
    """
    _raise_open_file_limit()
    listeners: list[socket.socket] = []
    try:
        for address in config.addresses:
            if inherited and address in inherited:
                listeners.append(inherited[address])
            elif isinstance(address, UnixAddress):
                listeners.append(bind_unix(address.path, config.unix_socket_mode, config.backlog))
            else:
                listeners.append(_bind(config, *address))
    except BaseException:
        for sock in listeners:
            if not (inherited and sock in inherited.values()):
                sock.close()
        raise
    return listeners


def _bind(config: Config, host: str, port: int) -> socket.socket:
    """Create, bind and listen; port 0 picks a free port."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(config.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix(path: str, mode: int, backlog: int) -> socket.socket:
    """A listening Unix domain socket at ``path`` with permissions ``mode``.

    A socket file left by a server that is gone (nothing accepts on it) is
    replaced; a live one, or a path that is not a socket, is refused rather
    than deleted. The mode is set between ``bind`` and ``listen``: no client
    can connect before it applies. (SO_REUSEPORT does not apply: a second
    process cannot bind the same path, so ``--workers`` share one socket.)
    """
    check_unix_path(path)
    _clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        try:
            os.chmod(path, mode)
            sock.listen(backlog)
        except BaseException:
            os.unlink(path)
            raise
    except BaseException:
        sock.close()
        raise
    return sock


def _clear_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket: not removing it to listen there")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # nobody listens: left over from a server that did not get to clean up
    except FileNotFoundError:
        return  # gone meanwhile
    except OSError as exc:  # a listener so busy its backlog is full, say: not ours to take over
        raise OSError(errno.EADDRINUSE, f"cannot tell whether a server is listening on {path}: {exc}") from None
    else:
        raise OSError(errno.EADDRINUSE, f"another server is listening on {path}")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _raise_open_file_limit() -> None:
    """Servers hold one descriptor per connection; take all the OS allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def accept_backlog(listener: socket.socket, backoff: float = 0.0) -> Iterator[tuple[socket.socket, Any]]:
    """Every connection waiting in a non-blocking listener's backlog, now.

    Draining the backlog per wake-up, rather than one connection per trip
    round the loop, keeps newcomers from starving behind busy connections. An
    error such as EMFILE is logged and ends the batch after ``backoff``
    seconds (a thread that only accepts can afford to pause; a reactor cannot).
    """
    while True:
        try:
            yield listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.warning("accept failed: %s", exc)
            if backoff:
                time.sleep(backoff)
            return


def accept_descriptors(listener: socket.socket, backoff: float = 0.0) -> Iterator[int]:
    """Every connection waiting in a non-blocking listener's backlog, as bare file descriptors,
    accepted without letting go of the GIL.

    Why a thread runtime needs this: ``socket.accept`` releases the GIL
    around the system call, like every call in :mod:`socket`, and getting it
    back means queueing behind every runnable thread. A thread per
    connection under load has hundreds of them, each holding the GIL for a
    request's worth of work: at 1,000 busy connections the accept loop got
    the GIL about 40 times a second and so accepted about 40 connections a
    second, leaving the rest in the backlog for many seconds. ``accept4``
    called through :class:`ctypes.PyDLL` keeps the GIL (it cannot block: the
    listener is non-blocking), so one turn drains the whole backlog. The
    caller makes each descriptor a socket on the connection's own thread,
    where the calls that do drop the GIL (``getpeername``, setting the
    timeout) cost only that thread.

    Where ``accept4`` is missing (not Linux) this is :func:`accept_backlog`.
    """
    if _accept4 is None:
        for sock, _ in accept_backlog(listener, backoff):
            yield sock.detach()
        return
    while True:
        fd = listener.fileno()  # each time: a batch may let go of the GIL (a rejection), and a shutdown close it
        if fd < 0:
            return
        conn = _accept4(fd, None, None, socket.SOCK_CLOEXEC)
        if conn >= 0:
            yield conn
            continue
        code = ctypes.get_errno()
        if code in (errno.EAGAIN, errno.EWOULDBLOCK):
            return
        if code in (errno.EINTR, errno.ECONNABORTED, errno.EPROTO):
            continue  # a signal, or a client that gave up while queued: take the next
        _warn_accept_failed(os.strerror(code))  # EMFILE and its kind
        if backoff:
            time.sleep(backoff)
        return


_last_warning = 0.0


def _warn_accept_failed(why: str) -> None:
    """At most once a second: while descriptors run out, every attempt fails, and threaded tries every 2 ms."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= 1.0:
        _last_warning = now
        logger.warning("accept failed: %s", why)


def _gil_holding_accept4() -> Any:
    try:
        accept4 = ctypes.PyDLL(None, use_errno=True).accept4
    except (AttributeError, OSError):
        return None
    accept4.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
    accept4.restype = ctypes.c_int
    return accept4


_accept4 = _gil_holding_accept4()
