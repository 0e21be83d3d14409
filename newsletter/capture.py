"""A local SMTP server that keeps every message in a Maildir instead of delivering it.

Editors point the newsletter at it to see exactly what subscribers would get
(open the Maildir with any mail client, or the .eml files with a browser);
the demo sends through it. It listens on loopback only.
"""

from __future__ import annotations

import mailbox
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


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


def start_capture(maildir: Path, *, host: str = "127.0.0.1", port: int = 0) -> Controller:
    """Start the server in a background thread (port 0: pick a free one; see `.port`)."""
    handler = MaildirHandler(maildir)
    controller = Controller(
        handler, hostname=host, port=port or free_port(host), ready_timeout=10, enable_SMTPUTF8=True
    )
    controller.start()
    return controller
