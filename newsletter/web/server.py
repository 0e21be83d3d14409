"""The HTTP server of `newsletter serve`: uvicorn with the limits a public site needs.

uvicorn's h11 protocol closes a keep-alive connection only while it is idle: one
byte cancels that timer, and a connection that never sends a whole request line
(or body) is held for ever: 800 such connections cost an attacker nothing.
`Protocol` adds what it lacks:

* a header deadline: from the moment a client connects, and from the end of each
  response, it has HTTP_HEADER_TIMEOUT seconds to finish a request's headers, or
  the connection is closed (as nginx's client_header_timeout does);
* a body deadline: once the headers are in, HTTP_BODY_TIMEOUT seconds for the
  body (every form here is a few KB), so a body sent a byte at a time holds
  neither a connection nor the app's task waiting for it;
* a connection cap: a connection beyond HTTP_MAX_CONNECTIONS is answered 503 and
  closed at once, so the slots, file descriptors and memory stay bounded while
  the connections already open are served.

The idle keep-alive timeout is uvicorn's own (HTTP_KEEPALIVE_TIMEOUT). uvicorn's
`limit_concurrency` is left off: it counts the same connections and would answer
503 to requests on connections already accepted. The cap is checked against the
open-files limit, which `serve` raises to its hard maximum first: a cap the
process could not reach would fail with EMFILE in accept() instead of a 503.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Any

import h11
import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from newsletter.config import Settings

log = logging.getLogger("newsletter.web")

# Descriptors kept for everything but client connections: the database, log files,
# the thread pool's work, SMTP connections of an editor's send.
RESERVED_FILES = 256
BACKLOG = 2048  # the kernel's accept queue (capped by net.core.somaxconn)
REFUSAL_LOG_EVERY = 60.0  # seconds between warnings while connections are refused
_BUSY_BODY = b"too many connections; try again shortly\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 5\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


class ServerConfig(uvicorn.Config):
    """uvicorn's Config plus the limits `Protocol` applies."""

    def __init__(
        self,
        app: Any,
        *,
        header_timeout: float,
        body_timeout: float,
        max_connections: int,
        **kw: Any,
    ) -> None:
        super().__init__(app, **kw)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.refused = 0  # connections refused since the last warning
        self.warned_at: float | None = None


class Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and a connection cap.

    What the client owes next decides the deadline: a request's headers (from
    connecting, or from the end of the last response), then its body; nothing
    while the request is in and the app answers. The state is h11's, read after
    every event that can change it, so a pipelined request or an early answer
    (a 404 sent before the body arrived) is followed like any other.
    """

    config: ServerConfig

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting: object = None  # h11.IDLE (headers owed), h11.SEND_BODY or None
        super().connection_made(transport)
        if len(self.connections) > self.config.max_connections:
            self.connections.discard(self)  # it never holds a slot
            self._note_refusal()
            transport.write(_BUSY)
            transport.close()
            return
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the deadline for what the client owes now, unless it already runs for it."""
        state = self.conn.their_state
        awaiting = state if state is h11.IDLE or state is h11.SEND_BODY else None
        if self.transport.is_closing():
            awaiting = None
        if awaiting is self._awaiting:
            return
        self._cancel_deadline()
        self._awaiting = awaiting
        if awaiting is not None:
            config = self.config
            timeout = config.header_timeout if awaiting is h11.IDLE else config.body_timeout
            self._deadline = self.loop.call_later(timeout, self._too_slow, awaiting)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, awaiting: object) -> None:
        """The headers or the body did not arrive in time: close (an app waiting for
        the body hears a disconnect)."""
        self._deadline = None
        if self.conn.their_state is awaiting and not self.transport.is_closing():
            self.transport.close()

    def _note_refusal(self) -> None:
        config = self.config
        config.refused += 1
        now = self.loop.time()
        if config.warned_at is None or now - config.warned_at >= REFUSAL_LOG_EVERY:
            log.warning(
                "refused %d connection(s): %d open is HTTP_MAX_CONNECTIONS",
                config.refused,
                config.max_connections,
            )
            config.refused, config.warned_at = 0, now


def connection_cap(settings: Settings) -> int:
    """HTTP_MAX_CONNECTIONS, lowered (with a warning) to what the open-files limit allows.

    The soft limit is raised to the hard one first (as nginx's worker_rlimit_nofile):
    the usual soft 1024 would allow fewer connections than the default cap.
    """
    wanted = settings.http_max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit to %d: %s", target, exc)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    cap = max(1, soft - RESERVED_FILES)
    log.warning(
        "HTTP_MAX_CONNECTIONS=%d is more than the open-files limit (%d) allows: serving at "
        "most %d; raise LimitNOFILE (systemd) or lower the setting",
        wanted,
        soft,
        cap,
    )
    return cap


class QuietDisconnects:
    """ASGI wrapper: a client gone before its body was read ends the request quietly.

    A route reading the form of a client that left (or that the body deadline
    closed) gets Starlette's ClientDisconnect; nobody is there to answer, and it
    is no fault of the app's, so it is a debug line, not a logged traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            log.debug("the client left before its request was read: %s", scope.get("path"))


def server_config(app: Any, settings: Settings) -> ServerConfig:
    """The uvicorn configuration of `newsletter serve`, with the limits of `settings`."""
    return ServerConfig(
        QuietDisconnects(app),
        header_timeout=settings.http_header_timeout,
        body_timeout=settings.http_body_timeout,
        max_connections=connection_cap(settings),
        http=Protocol,
        timeout_keep_alive=settings.http_keepalive_timeout,  # type: ignore[arg-type]
        backlog=BACKLOG,
        log_level="warning",
        proxy_headers=False,  # the one rule for X-Forwarded-* is the app's (web/proxy.py)
        lifespan="on",
    )


def run(app: Any, settings: Settings, sock: socket.socket) -> None:
    """Serve `app` on the bound, listening `sock` until SIGINT or SIGTERM."""
    uvicorn.Server(server_config(app, settings)).run(sockets=[sock])
