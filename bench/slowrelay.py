"""A TCP proxy that makes a fast local SMTP server look like a relay far away.

Every reply from the server reaches the client `delay` seconds after the server
sent it (each reply on its own schedule, so replies are delayed, not
serialized); what the client sends goes through at once. That adds one `delay`
to every SMTP round trip, like a relay 25 ms away.

The proxy also reads the client's side of the conversation and counts the
commands (MAIL, RCPT, DATA, the end-of-data ".", RSET, NOOP, EHLO, QUIT...), so
the benchmark can show how many round trips one message costs our client, and
when the first and last messages were accepted (for the steady rate).

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
from collections import Counter
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
    messages: int = 0  # end-of-data replies forwarded
    first_message_at: float | None = None  # time.time() of the first end-of-data reply
    last_message_at: float | None = None
    # per session: [messages, time of its first accepted message, time of its last]
    per_session: list[list] = field(default_factory=list)

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
        }


class CommandCounter:
    """Follows the client's byte stream: command lines, then DATA bodies up to <CRLF>.<CRLF>."""

    def __init__(self, stats: Stats, trace: Callable[[str], None] | None = None) -> None:
        self.stats = stats
        self.trace = trace
        self.buffer = b""
        self.in_data = False
        self.tail = b""  # the last bytes of a body, to find a terminator split across reads
        self.pending_ends = 0  # end-of-data sent, reply not yet forwarded
        self.outstanding = 1  # replies the client waits for (first: the greeting)

    def sent(self, verb: str) -> None:
        """The client sent a command (or a message's final "."): one more reply to wait for."""
        self.stats.commands[verb] += 1
        if self.outstanding == 0:
            self.stats.trips[verb] += 1
        self.outstanding += 1

    def feed(self, data: bytes) -> None:
        while data:
            if self.in_data:
                window = self.tail + data
                end = window.find(_END_OF_DATA)
                if end < 0:
                    self.tail = window[-4:]
                    return
                self.sent(".")
                self.pending_ends += 1
                if self.trace:
                    self.trace("C: <body> .")
                self.in_data = False
                data = window[end + len(_END_OF_DATA) :]
                continue
            self.buffer += data
            data = b""
            while not self.in_data and b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                verb = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
                self.sent(verb)
                if self.trace:
                    self.trace(f"C: {line[:60].decode('ascii', 'replace')}")
                if verb == "DATA":
                    self.in_data = True
                    self.tail = b"\r\n"  # an empty body ends right after the DATA line
                    data, self.buffer = self.buffer, b""


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
                counter.outstanding -= 1  # before the client can see it and send more
                writer.write(reply)
                await writer.drain()
                self.stats.replies += 1
                if counter.trace:
                    counter.trace(f"S: {reply.splitlines()[-1][:60].decode('ascii', 'replace')}")
                if counter.pending_ends and not reply.startswith(b"354"):
                    # the reply to an end-of-data: a message accepted (or refused)
                    counter.pending_ends -= 1
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
