"""A TCP proxy that makes a fast local SMTP server look like a relay far away.

Every reply from the server reaches the client `delay` seconds after the server
sent it (each reply on its own schedule, so replies are delayed, not
serialized); what the client sends goes through at once. That adds one `delay`
to every SMTP round trip, like a relay 25 ms away.

The proxy also reads the client's side of the conversation and counts the
commands (MAIL, RCPT, DATA, the end-of-data ".", BDAT, RSET, NOOP, EHLO, QUIT...),
so the benchmark can show how many round trips one message costs our client, and
when the first and last messages were accepted (for the steady rate). A message
ends with the reply to its final "." or to its `BDAT <n> LAST` (RFC 3030); a
BDAT's n chunk bytes are passed over, never read as commands. Replies are matched
to commands in order (RFC 2920), so with a window of pipelined messages several
messages ride in one round trip and each is still counted when its own reply passes.

Run it as a process (what the benchmark does, so it has its own CPU):

    python -m bench.slowrelay --upstream 127.0.0.1:2525 --delay 0.025 --stats stats.json

It prints `listening PORT` once ready, and writes the stats as JSON when it gets
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_END_OF_DATA = b"\r\n.\r\n"


@dataclass
class Stats:
    sessions: int = 0
    replies: int = 0
    commands: Counter = field(default_factory=Counter)
    # round trips, by the command that started each: a command sent while no reply was
    # outstanding starts one; commands sent before the replies came (pipelining) do not
    trips: Counter = field(default_factory=Counter)
    messages: int = 0  # end-of-data replies forwarded (to a "." or to BDAT ... LAST)
    first_message_at: float | None = None  # time.time() of the first end-of-data reply
    last_message_at: float | None = None
    # per session: [messages, time of its first accepted message, time of its last]
    per_session: list[list] = field(default_factory=list)
    chunk_bytes: int = 0  # BDAT chunk bytes passed over

    def as_dict(self) -> dict:
        return {
            "sessions": self.sessions,
            "replies": self.replies,
            "commands": dict(self.commands),
            "trips": dict(self.trips),
            "messages": self.messages,
            "first_message_at": self.first_message_at,
            "last_message_at": self.last_message_at,
            "per_session": self.per_session,
            "chunk_bytes": self.chunk_bytes,
        }


class CommandCounter:
    """Follows the client's byte stream and matches each reply to what it answers.

    The stream is command lines, DATA bodies (after a 354, up to <CRLF>.<CRLF>) and BDAT
    chunks (exactly n bytes after `BDAT n [LAST]`). `awaiting` holds, oldest first, what
    each outstanding reply answers ("greeting", a verb, "." or "BDAT LAST"): a server
    answers in order, so each reply the proxy forwards settles the oldest one.

    Whether a body follows DATA is known only from DATA's reply (354, or a refusal after
    which the client goes on with commands). A client sends the body after that reply
    reaches it; bytes that come before it (a client that does not wait) are held until
    the reply passes, then read as a body or as commands.
    """

    def __init__(self, stats: Stats, trace: Callable[[str], None] | None = None) -> None:
        self.stats = stats
        self.trace = trace
        self.awaiting: deque[str] = deque(["greeting"])
        self.mode = "commands"  # or "body", "chunk", "after DATA" (its reply not yet seen)
        self.buffer = b""  # commands: a line not yet whole; after DATA: the bytes held
        self.tail = b""  # the last bytes of a body, to find a terminator split across reads
        self.skip = 0  # chunk bytes still to pass over

    @property
    def outstanding(self) -> int:
        """Replies the client waits for (at first: the greeting)."""
        return len(self.awaiting)

    def sent(self, verb: str, answers: str | None = None) -> None:
        """The client sent a command (or a message's final "."): one more reply to wait for.

        A command sent while no reply is outstanding starts a round trip.
        """
        self.stats.commands[verb] += 1
        if not self.awaiting:
            self.stats.trips[verb] += 1
        self.awaiting.append(answers or verb)

    def replied(self, reply: bytes) -> bool:
        """A reply is about to reach the client; True when it ends a message.

        Call it before the client can see the reply (and send more), so that what the
        client sends next meets the right count of outstanding replies.
        """
        if not self.awaiting:
            return False  # unsolicited (a 421 on an idle timeout): it answers nothing
        answers = self.awaiting[0]
        if answers == "DATA" and self.mode == "after DATA":
            held, self.buffer = self.buffer, b""
            if reply.startswith(b"354"):
                self.mode, self.tail = "body", b"\r\n"  # an empty body ends at once
            else:
                self.mode = "commands"
            self.feed(held)  # sent while DATA's reply was outstanding: no trip starts
        self.awaiting.popleft()
        return answers in (".", "BDAT LAST")

    def feed(self, data: bytes) -> None:
        """Bytes the client sent, in order, however the reads split them."""
        while data:
            if self.mode == "after DATA":
                self.buffer += data
                return
            if self.mode == "chunk":
                passed = min(self.skip, len(data))
                self.skip -= passed
                self.stats.chunk_bytes += passed
                data = data[passed:]
                if not self.skip:
                    self.mode = "commands"
                continue
            if self.mode == "body":
                window = self.tail + data
                end = window.find(_END_OF_DATA)
                if end < 0:
                    self.tail = window[-4:]
                    return
                self.sent(".")
                if self.trace:
                    self.trace("C: <body> .")
                self.mode = "commands"
                data = window[end + len(_END_OF_DATA) :]
                continue
            self.buffer += data
            data = b""
            while self.mode == "commands" and b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                self._command(line)
            if self.mode != "commands":  # the rest is a chunk, or waits for DATA's reply
                data, self.buffer = self.buffer, b""

    def _command(self, line: bytes) -> None:
        words = line.split()
        verb = words[0].upper().decode("ascii", "replace") if words else ""
        if self.trace:
            self.trace(f"C: {line[:60].decode('ascii', 'replace')}")
        if verb == "BDAT" and len(words) > 1 and words[1].isdigit():
            last = len(words) > 2 and words[2].upper() == b"LAST"
            self.sent(verb, "BDAT LAST" if last else verb)
            self.skip = int(words[1])
            if self.skip:
                self.mode = "chunk"
            return
        self.sent(verb)  # a BDAT without a size too: the server cannot resynchronise either
        if verb == "DATA":
            self.mode = "after DATA"


def split_replies(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete SMTP replies (the last line has a space or nothing after the code) and the rest."""
    replies, start, position = [], 0, 0
    while True:
        end = buffer.find(b"\r\n", position)
        if end < 0:
            return replies, buffer[start:]
        line = buffer[position:end]
        position = end + 2
        if len(line) < 4 or line[3:4] != b"-":
            replies.append(buffer[start:position])
            start = position


class SlowRelay:
    def __init__(self, upstream: tuple[str, int], delay: float, trace: Path | None = None) -> None:
        self.upstream = upstream
        self.delay = delay
        self.stats = Stats()
        self.trace_file = trace.open("a", encoding="utf-8") if trace else None

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        self.stats.sessions += 1
        self.stats.trips["greeting"] += 1
        session: list = [0, None, None]
        self.stats.per_session.append(session)
        number = self.stats.sessions
        trace = None
        if self.trace_file is not None:
            out = self.trace_file

            def trace(text: str) -> None:
                out.write(f"{time.time():.6f} #{number} {text}\n")

        counter = CommandCounter(self.stats, trace)
        tasks = [
            asyncio.create_task(self._to_server(client_r, server_w, counter)),
            asyncio.create_task(self._to_client(server_r, client_w, counter, session)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_w, server_w):
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: CommandCounter
    ) -> None:
        while data := await reader.read(65536):
            counter.feed(data)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
        await asyncio.sleep(self.delay * 2)  # let the last delayed replies go out

    async def _to_client(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counter: CommandCounter,
        session: list,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, reply = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                ends_message = counter.replied(reply)  # before the client can send more
                writer.write(reply)
                await writer.drain()
                self.stats.replies += 1
                if counter.trace:
                    counter.trace(f"S: {reply.splitlines()[-1][:60].decode('ascii', 'replace')}")
                if ends_message:  # the reply to a "." or BDAT LAST: accepted (or refused)
                    now = time.time()
                    self.stats.messages += 1
                    self.stats.first_message_at = self.stats.first_message_at or now
                    self.stats.last_message_at = now
                    session[0] += 1
                    session[1] = session[1] or now
                    session[2] = now

        sender = asyncio.create_task(deliver())
        buffer = b""
        try:
            while data := await reader.read(65536):
                arrived = loop.time()
                replies, buffer = split_replies(buffer + data)
                for reply in replies:
                    queue.put_nowait((arrived + self.delay, reply))
            await queue.put(None)
            await sender
        finally:
            sender.cancel()


async def serve(
    upstream: tuple[str, int],
    delay: float,
    stats_path: Path | None,
    port: int = 0,
    trace: Path | None = None,
) -> None:
    relay = SlowRelay(upstream, delay, trace)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", port, backlog=1000)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
    if relay.trace_file is not None:
        relay.trace_file.close()
    if stats_path is not None:
        stats_path.write_text(json.dumps(relay.stats.as_dict()), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Delay every SMTP reply by --delay seconds.")
    parser.add_argument("--upstream", required=True, help="host:port of the real server")
    parser.add_argument("--delay", type=float, default=0.025)
    parser.add_argument("--port", type=int, default=0, help="listen port (0: a free one)")
    parser.add_argument("--stats", type=Path, help="write the command counts here on exit")
    parser.add_argument("--trace", type=Path, help="append every command and reply, timed")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    asyncio.run(serve((host, int(port)), args.delay, args.stats, args.port, args.trace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
