"""Streaming messages on one connection: ESMTP PIPELINING (RFC 2920) and CHUNKING (RFC 3030).

aiosmtplib sends each command and waits for its reply: four round trips per
message. On a relay far away the round trips decide the rate, so once
aiosmtplib has opened the session (TLS, EHLO, AUTH) this module takes the
transport over and writes whole transactions without waiting where the RFCs
allow it:

    DATA (PIPELINING)    the message's body, its final dot and the next message's
                         MAIL, RCPT and DATA go out together (RFC 2920 lets the
                         content start a group), so each message waits once: for
                         the 354 after its DATA.
    BDAT (CHUNKING)      MAIL, RCPT and `BDAT <size> LAST` with the message need no
                         354, so up to PIPELINE_WINDOW messages are on the wire at
                         once, none waiting for another (Postfix's BDAT_README).

Every reply is handed to the command that asked for it, in the order the
commands were written (`ReplyReader`): a relay answers in order, so the Nth
reply belongs to the Nth command. A connection that breaks, or stays silent
for SMTP_TIMEOUT while replies are owed, fails every command still waiting:
their messages have no final reply and are retried, never counted as sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# Asked once a message's turn on the connection has come, just before it is written:
# False leaves it unsent (its subscriber left while it waited). Raises what it raises.
Wanted = Callable[[], Awaitable[bool]]


class ConnectionClosed(ConnectionError):
    """The relay closed the connection, or it broke, with replies still owed."""


@dataclass(frozen=True)
class Reply:
    code: int  # 0 when the reply could not be read: a temporary failure
    text: str

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.text.split())}".strip()


@dataclass(frozen=True)
class Replies:
    """What the relay said to one message's commands."""

    mail: Reply
    rcpt: Reply
    data: Reply | None  # the reply to DATA (354: the body may follow); None with BDAT
    final: Reply | None  # the reply to the message itself; None when it was never sent


def _retrieve(future: asyncio.Future[Reply]) -> None:
    """A reply nobody reads (RSET's, QUIT's) must not log "exception never retrieved"."""
    if not future.cancelled():
        future.exception()


class ReplyReader(asyncio.Protocol):
    """The relay's side of a streamed connection: each reply to the command waiting for it."""

    MAX_REPLY = 64 * 1024

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.pending: deque[asyncio.Future[Reply]] = deque()
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed: BaseException | None = None
        self.heard_at = self.loop.time()  # the last sign of life while replies are owed

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        self.heard_at = self.loop.time()
        while (reply := self._parse_one()) is not None:
            if not self.pending:
                self.abort(ConnectionClosed(f"the relay sent a reply nobody asked for: {reply}"))
                return
            future = self.pending.popleft()
            if not future.done():
                future.set_result(reply)
        if len(self.buffer) > self.MAX_REPLY:
            self.abort(ConnectionClosed("reply too long"))

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

    @property
    def alive(self) -> bool:
        return self.closed is None and not self.transport.is_closing()

    async def ready(self, timeout: float) -> None:
        """Wait until the transport takes more (flow control); raise if it is gone."""
        if self.closed is not None:
            raise self.closed
        if not self.writable.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self.writable.wait()
            except TimeoutError:
                self.abort(TimeoutError(f"the relay read nothing for {timeout:g}s"))
        if not self.alive:
            raise self.closed or ConnectionClosed("connection closed")

    def promise(self, replies: int) -> list[asyncio.Future[Reply]]:
        """Futures for replies to commands not written yet (`write` gives them their place)."""
        futures = [self.loop.create_future() for _ in range(replies)]
        for future in futures:
            future.add_done_callback(_retrieve)
        return futures

    def write(self, data: bytes, owed: list[asyncio.Future[Reply]]) -> None:
        """Write commands (and content) at once, with a future for each reply they are owed.

        Synchronous on purpose: the write and the place of its replies in the queue
        are one step, so commands of different messages can never interleave.
        """
        if not self.alive:
            raise self.closed or ConnectionClosed("connection closed")
        if not self.pending:
            self.heard_at = self.loop.time()  # the silence is counted from now
        self.pending.extend(owed)
        self.transport.write(data)

    def send(self, data: bytes, replies: int) -> list[asyncio.Future[Reply]]:
        owed = self.promise(replies)
        self.write(data, owed)
        return owed

    async def wait(self, future: asyncio.Future[Reply], timeout: float) -> Reply:
        """The reply, once it comes. The relay may take a while when several messages are
        ahead of this one, so the timeout is for silence (nothing heard for `timeout`
        while replies are owed), not for this reply alone."""
        while not future.done():
            left = self.heard_at + timeout - self.loop.time()
            if left <= 0:
                self.abort(TimeoutError(f"no reply within {timeout:g}s"))
                break
            await asyncio.wait({future}, timeout=left)
        return future.result()

    def abort(self, exc: BaseException) -> None:
        """Give up on the connection: every reply still owed fails with `exc`."""
        self._lost(exc)
        self.transport.abort()

    def _lost(self, exc: BaseException) -> None:
        if self.closed is None:
            self.closed = exc
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(exc)

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


class Stream:
    """Whole transactions on one connection, as many at a time as the relay allows.

    Callers (the send loop's lanes of one connection) call `transact` concurrently.
    With CHUNKING up to `window` transactions are in flight; without it each holds
    the turn from its MAIL until its body is written, so the next one's commands
    follow the body in the same flight, and at most one message awaits its final
    reply.
    """

    def __init__(
        self, reader: ReplyReader, *, chunking: bool, window: int, timeout: float, smtputf8: bool
    ) -> None:
        self.reader = reader
        self.chunking = chunking
        self.window = window if chunking else 1
        self.timeout = timeout
        self.smtputf8 = smtputf8
        self._slots = asyncio.Semaphore(self.window)
        self._turn = asyncio.Lock()  # DATA: held from a message's MAIL until its body is out
        self._next = asyncio.Lock()  # DATA: held by the message standing next
        self._staged: tuple[bytes, list[asyncio.Future[Reply]]] | None = None

    async def transact(
        self, sender: str, recipient: str, data: bytes, wanted: Wanted | None = None
    ) -> Replies | None:
        """One message; None when `wanted` said no. Raises TimeoutError or ConnectionClosed
        when its replies never came."""
        utf8 = not (sender.isascii() and recipient.isascii())
        envelope = (
            f"MAIL FROM:<{sender}> SIZE={len(data)}{' SMTPUTF8' if utf8 else ''}\r\n"
            f"RCPT TO:<{recipient}>\r\n"
        ).encode("utf-8" if utf8 else "ascii")
        if self.chunking:
            return await self._bdat(envelope, data, wanted)
        return await self._data(envelope, data, wanted)

    async def _bdat(self, envelope: bytes, data: bytes, wanted: Wanted | None) -> Replies | None:
        async with self._slots:
            if wanted is not None and not await wanted():
                return None
            await self.reader.ready(self.timeout)
            command = b"BDAT %d LAST\r\n" % len(data)
            mail, rcpt, final = self.reader.send(envelope + command + data, 3)
            replies = Replies(
                await self._wait(mail), await self._wait(rcpt), None, await self._wait(final)
            )
        if replies.mail.code < 400 and replies.final is not None and replies.final.code >= 400:
            # Postfix ends a transaction whose BDAT failed; a stricter server keeps it open
            # and refuses the next MAIL. RSET makes both ready (the messages already
            # behind this one are judged by their own replies).
            self._reset()
        return replies

    async def _data(self, envelope: bytes, data: bytes, wanted: Wanted | None) -> Replies | None:
        """One wait per message: while the message on the wire waits for its 354, the next
        one (checked and staged) waits to ride with its body in the same write. One write,
        not two, also matters to the relay: it reads the body's end and the next commands
        together and answers them in one packet (two small replies in a row meet Nagle's
        algorithm and a delayed ACK, about 40 ms)."""
        async with self._next:  # one message at a time stands next in line
            if wanted is not None and not await wanted():
                return None
            await self.reader.ready(self.timeout)
            owed = self.reader.promise(3)
            self._staged = (envelope + b"DATA\r\n", owed)
            if not self._turn.locked():
                self._write_staged()  # nothing on the wire to ride with
            try:
                await self._turn.acquire()
            except BaseException:  # cancelled in line (a send's last resort at a stop)
                if self._staged is not None and self._staged[1] is owed:
                    self._staged = None  # never written: nothing to undo
                else:  # our DATA is on the wire, and no body will follow it
                    self.reader.abort(ConnectionClosed("a message was cancelled mid-transaction"))
                raise
        try:
            if self._staged is not None and self._staged[1] is owed:
                self._write_staged()  # the message ahead was refused: no body to ride with
            mail, rcpt, start = [await self._wait(future) for future in owed]
            if start.code != 354:
                if mail.code < 400:
                    self._reset()
                return Replies(mail, rcpt, start, None)
            if mail.code >= 400 or rcpt.code >= 400:
                # The relay took DATA though it refused the envelope (RFC 2920 §3.1 says it
                # should not): an empty message it must refuse, then a reset.
                self.reader.send(b".\r\n", 1)
                self._reset()
                return Replies(mail, rcpt, start, None)
            await self.reader.ready(self.timeout)
            content, final = dot_stuff(data), self.reader.promise(1)
            if self._staged is not None:  # the next message's MAIL, RCPT, DATA ride along
                (more, theirs), self._staged = self._staged, None
                self.reader.write(content + more, final + theirs)
            else:
                self.reader.write(content, final)
        except asyncio.CancelledError:  # the relay may be waiting for a body: not reusable
            self.reader.abort(ConnectionClosed("a message was cancelled mid-transaction"))
            raise
        finally:
            self._turn.release()
        return Replies(mail, rcpt, start, await self._wait(final[0]))

    def _write_staged(self) -> None:
        assert self._staged is not None
        (commands, owed), self._staged = self._staged, None
        self.reader.write(commands, owed)

    def _reset(self) -> None:
        """RSET after a refused transaction; its reply is read in turn and not needed."""
        if self.reader.alive:
            self.reader.send(b"RSET\r\n", 1)

    async def _wait(self, future: asyncio.Future[Reply]) -> Reply:
        return await self.reader.wait(future, self.timeout)

    async def quit(self) -> None:
        """QUIT once every owed reply has come (bounded), then close."""
        reader = self.reader
        try:
            if reader.alive:
                (bye,) = reader.send(b"QUIT\r\n", 1)
                await reader.wait(bye, min(self.timeout, 2.0))
        except (ConnectionClosed, OSError, TimeoutError):
            pass
        reader.transport.close()


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
