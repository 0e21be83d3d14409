"""ESMTP PIPELINING (RFC 2920) for the message loop, after aiosmtplib's handshake.

aiosmtplib sends each command and waits for its reply: four round trips per
message (MAIL, RCPT, DATA, end of data). A relay that offers PIPELINING lets
a client send MAIL, RCPT and DATA together and read the three replies after:
two round trips per message, which halves the time per message on a relay far
away. aiosmtplib still opens the session (TLS, EHLO, AUTH); then this module's
protocol takes over the transport and speaks only the transaction.

It understands exactly what it needs: replies (single- and multi-line), the
three pipelined commands, the message, RSET and QUIT. Everything else stays in
aiosmtplib.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


class ConnectionClosed(ConnectionError):
    """The relay closed the connection or it broke."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.text.split())}".strip()


class PipeliningProtocol(asyncio.Protocol):
    """Collects every complete reply the relay sends, in order."""

    MAX_REPLY = 64 * 1024

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.replies: deque[Reply] = deque()
        self.arrived = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed: BaseException | None = None

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        while (reply := self._parse_one()) is not None:
            self.replies.append(reply)
        if len(self.buffer) > self.MAX_REPLY:
            self._lost(ConnectionClosed("reply too long"))
            self.transport.abort()
        self.arrived.set()

    def eof_received(self) -> bool:
        self._lost(ConnectionClosed("the relay closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(ConnectionClosed(f"connection lost: {exc}" if exc else "connection closed"))
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # the client's side

    async def write(self, data: bytes) -> None:
        if self.closed is not None:
            raise self.closed
        await self.writable.wait()
        if self.closed is not None or self.transport.is_closing():
            raise self.closed or ConnectionClosed("connection closed")
        self.transport.write(data)

    async def reply(self, timeout: float) -> Reply:
        """The next reply, in the order the commands were sent."""
        async with asyncio.timeout(timeout):
            while not self.replies:
                if self.closed is not None:
                    raise self.closed
                self.arrived.clear()
                await self.arrived.wait()
        return self.replies.popleft()

    def _lost(self, exc: BaseException) -> None:
        if self.closed is None:
            self.closed = exc
        self.arrived.set()

    def _parse_one(self) -> Reply | None:
        """One complete reply off the front of the buffer: `250-a`, `250-b`, `250 c`."""
        offset, lines = 0, []
        while (end := self.buffer.find(b"\n", offset)) != -1:
            line = bytes(self.buffer[offset : end + 1]).rstrip(b"\r\n")
            offset = end + 1
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                try:
                    code = int(line[:3])
                except ValueError:
                    code = 0  # unreadable: treated as a temporary failure by the caller
                del self.buffer[:offset]
                return Reply(code, "\n".join(lines))
        return None


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with '.' gets another; ends with CRLF.CRLF.

    Messages from `message.build_message` never start a line with '.', so this is
    usually a search that finds nothing."""
    if data.startswith(b"."):
        data = b"." + data
    if b"\n." in data:
        data = data.replace(b"\n.", b"\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


async def pipelined_transaction(
    protocol: PipeliningProtocol,
    sender: str,
    recipient: str,
    data: bytes,
    *,
    timeout: float,
    smtputf8: bool = False,
) -> tuple[Reply, Reply, Reply, Reply | None]:
    """MAIL+RCPT+DATA in one write, then the message: (mail, rcpt, data, final) replies.

    `final` is None when the relay refused before the message (then the
    transaction is reset with RSET, so the connection can carry the next one).
    """
    size = f" SIZE={len(data)}"
    utf8 = " SMTPUTF8" if smtputf8 else ""
    commands = f"MAIL FROM:<{sender}>{size}{utf8}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
    await protocol.write(commands.encode("utf-8" if smtputf8 else "ascii"))
    mail = await protocol.reply(timeout)
    rcpt = await protocol.reply(timeout)
    start = await protocol.reply(timeout)
    if start.code != 354:
        if mail.code < 400 or rcpt.code < 400:
            await protocol.write(b"RSET\r\n")
            await protocol.reply(timeout)
        return mail, rcpt, start, None
    if mail.code >= 400 or rcpt.code >= 400:
        # The relay accepted DATA even though it refused the envelope: send an empty
        # message that it must refuse, then reset. Rare; RFC 2920 §3.1 says servers reject.
        await protocol.write(b".\r\n")
        await protocol.reply(timeout)
        await protocol.write(b"RSET\r\n")
        await protocol.reply(timeout)
        return mail, rcpt, start, None
    await protocol.write(dot_stuff(data))
    return mail, rcpt, start, await protocol.reply(timeout)
