"""A local SMTP server that keeps every message in a Maildir instead of delivering it.

Editors point the newsletter at it to see exactly what subscribers would get
(open the Maildir with any mail client, or the .eml files with a browser);
the demo sends through it. It listens on loopback only, on a socket bound
before the server starts (`newsletter.listen`): a busy port is one clear error.
"""

from __future__ import annotations

import asyncio
import mailbox
import socket
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.listen import listen


@dataclass
class MaildirHandler:
    """aiosmtpd handler: store each accepted message, with the envelope as headers."""

    maildir: Path
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.maildir.parent.mkdir(parents=True, exist_ok=True)
        self.box = mailbox.Maildir(self.maildir, create=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else content.encode()
        prefix = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        message = mailbox.MaildirMessage(message_from_bytes(prefix + data, policy=policy.compat32))
        with self._lock:
            self.box.add(message)
            self.count += 1
        return "250 2.0.0 Ok: captured"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, for servers started by the demo and tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class _BoundController(Controller):
    """aiosmtpd's threaded controller, serving a socket that is already bound and listening."""

    def __init__(self, handler: MaildirHandler, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:  # aiosmtpd's hook
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


def start_capture(maildir: Path, *, host: str = "127.0.0.1", port: int = 0) -> Controller:
    """Start the server in a background thread (port 0: any free one; see `.port`).

    A port that is taken raises LockedError before anything starts.
    """
    sock = listen(host, port)
    handler = MaildirHandler(maildir)
    controller = _BoundController(handler, sock, ready_timeout=10, enable_SMTPUTF8=True)
    try:
        controller.start()
    except BaseException:
        sock.close()
        raise
    return controller
