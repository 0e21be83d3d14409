"""The listening socket of `serve` and `capture`, bound before either says it is listening.

Binding first means a busy port is one line and exit 1 (naming the port and the
fix) instead of an announcement followed by a server's raw error, and port 0
means "any free port" without the race of probing one and binding it later.
"""

from __future__ import annotations

import errno
import socket

from newsletter.errors import InputError, LockedError


def listen(host: str, port: int, *, option: str = "--port") -> socket.socket:
    """A TCP socket bound to host:port and listening; `option` is what the error names."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(
            f"cannot listen on {host!r}: {exc}",
            where="--host",
            hint="give an address of this machine",
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LockedError(
                f"port {port} on {host} is already in use",
                where=option,
                hint=f"stop what listens there or choose another port with {option}; "
                f"`ss -ltnp 'sport = :{port}'` names it",
            ) from None
        where, hint = option, f"choose another --host or {option}"
        if exc.errno == errno.EACCES:
            hint = f"ports below 1024 need root; choose another port with {option}"
        elif exc.errno == errno.EADDRNOTAVAIL:
            where, hint = "--host", "give an address of this machine, e.g. 127.0.0.1"
        raise InputError(
            f"cannot listen on {host}:{port}: {exc.strerror}", where=where, hint=hint
        ) from None
    return sock
