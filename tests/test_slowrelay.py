"""The benchmark's slow relay counts commands, messages and round trips exactly.

`python -m bench.slowrelay` runs as the benchmark runs it, in front of the fault server
(over DATA, and with chunking=True over BDAT). A raw-socket client writes pipelined groups
the way a streaming sender does and reads every reply of a group before it writes the next,
so each group starts exactly one round trip whatever the timing; the stats JSON the relay
writes at SIGTERM must then match the script to the command. Speed is not asserted here.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from faultsmtp import Fault, FaultPlan, FaultServer

ROOT = Path(__file__).resolve().parent.parent
DELAY = 0.02
SENDER = "news@daily.example.org"
STATS_KEYS = {
    "sessions", "replies", "commands", "trips", "messages", "first_message_at",
    "last_message_at", "per_session", "chunk_bytes",
}  # fmt: skip


def body(number: int) -> bytes:
    """A message with lines a careless parser would take for commands or for its end."""
    return (
        f"From: {SENDER}\r\nTo: r{number}@example.com\r\nSubject: Number {number}\r\n\r\n"
        "MAIL FROM:<spoof@example.com>\r\nBDAT 5 LAST\r\n.\r\nQUIT\r\n"
    ).encode()


def stuffed(number: int) -> bytes:
    """body(number) as DATA carries it: dot-stuffed, then the final dot."""
    return body(number).replace(b"\r\n.", b"\r\n..") + b".\r\n"


def envelope(number: int, verb: bytes = b"DATA") -> bytes:
    """MAIL and RCPT for message `number`, then `verb` (DATA, or a BDAT line)."""
    return f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r{number}@example.com>\r\n".encode() + verb + b"\r\n"


def bdat_message(number: int) -> bytes:
    data = body(number)
    return envelope(number, b"BDAT %d LAST" % len(data)) + data


class Client:
    """A bare socket through the relay: write groups, read back their replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")
        self.greeting = self.replies(1)

    def replies(self, count: int) -> list[bytes]:
        """The last lines of the next `count` replies."""
        out = []
        while len(out) < count:
            line = self.file.readline()
            assert line, f"the connection closed after {out}"
            if line[3:4] != b"-":
                out.append(line.rstrip(b"\r\n"))
        return out

    def group(self, *writes: bytes, replies: int) -> list[bytes]:
        """Write a pipelined group (pieces with a pause between: separate reads), then
        wait for all its replies."""
        for number, data in enumerate(writes):
            if number:
                time.sleep(DELAY * 2)  # the proxy reads the next piece on its own
            self.sock.sendall(data)
        return self.replies(replies)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@contextmanager
def slow_relay(server: FaultServer, stats: dict) -> Iterator[int]:
    """`python -m bench.slowrelay` in front of `server`; fills `stats` after SIGTERM."""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"slowrelay-{os.getpid()}-{server.port}.json"
    upstream = f"{server.host}:{server.port}"
    command = [sys.executable, "-m", "bench.slowrelay", "--upstream", upstream,
               "--delay", str(DELAY), "--stats", str(path)]  # fmt: skip
    relay = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert relay.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(relay.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=10), "the relay never said it was listening"
        line = relay.stdout.readline()
        assert line.startswith("listening "), line
        yield int(line.split()[1])
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            assert relay.wait(timeout=10) == 0
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait(timeout=5)
            raise
    stats.update(json.loads(path.read_text(encoding="utf-8")))
    path.unlink()


def test_data_pipelined_groups_one_round_trip_per_message():
    stats: dict = {}
    with FaultServer(pipelining=True) as server, slow_relay(server, stats) as port:
        client = Client(port)
        try:
            assert client.group(b"EHLO client.test\r\n", replies=1) == [b"250 HELP"]
            first = client.group(envelope(0), replies=3)
            assert first[2].startswith(b"354")
            # the end of a body and the next envelope in one write (RFC 2920)
            second = client.group(stuffed(0) + envelope(1), replies=4)
            assert second[0] == b"250 2.0.0 Ok: queued" and second[3].startswith(b"354")
            # the final "." split across two reads, then the next envelope
            data = stuffed(1)
            third = client.group(data[:-2], data[-2:] + envelope(2), replies=4)
            assert third[0] == b"250 2.0.0 Ok: queued" and third[3].startswith(b"354")
            # the terminator's CRLF split from its dot ("\r\n." | "\r\n"), then QUIT
            data = stuffed(2)
            assert client.group(data[:-3], data[-3:-2], data[-2:] + b"QUIT\r\n", replies=2) == [
                b"250 2.0.0 Ok: queued",
                b"221 Bye",
            ]
        finally:
            client.close()
        delivered = [item.data for item in server.delivered]
        assert server.errors == []
    assert delivered == [body(0), body(1), body(2)]
    assert set(stats) == STATS_KEYS
    assert stats["commands"] == {"EHLO": 1, "MAIL": 3, "RCPT": 3, "DATA": 3, ".": 3, "QUIT": 1}
    assert stats["trips"] == {"greeting": 1, "EHLO": 1, "MAIL": 1, ".": 3}
    assert stats["messages"] == 3 and stats["sessions"] == 1
    assert stats["replies"] == 1 + 1 + 3 + 4 + 4 + 2
    assert stats["chunk_bytes"] == 0
    [[messages, first_at, last_at]] = stats["per_session"]
    assert messages == 3 and stats["first_message_at"] == first_at <= last_at
    assert stats["last_message_at"] == last_at


def test_a_refused_data_is_followed_by_commands_not_a_body():
    plan = FaultPlan(per_address={"r0@example.com": Fault("rcpt", "reply", 550)})
    stats: dict = {}
    with FaultServer(plan, pipelining=True) as server, slow_relay(server, stats) as port:
        client = Client(port)
        try:
            client.group(b"EHLO client.test\r\n", replies=1)
            refused = client.group(envelope(0), replies=3)  # no recipient: DATA gets a 503
            assert refused[1].startswith(b"550") and refused[2].startswith(b"503")
            replies = client.group(b"RSET\r\n" + envelope(1), replies=4)
            assert replies[3].startswith(b"354")
            assert client.group(stuffed(1) + b"QUIT\r\n", replies=2)[1] == b"221 Bye"
        finally:
            client.close()
        assert len(server.delivered) == 1
    assert stats["commands"] == {
        "EHLO": 1, "MAIL": 2, "RCPT": 2, "DATA": 2, "RSET": 1, ".": 1, "QUIT": 1,
    }  # fmt: skip
    assert stats["trips"] == {"greeting": 1, "EHLO": 1, "MAIL": 1, "RSET": 1, ".": 1}
    assert stats["messages"] == 1


def test_a_body_sent_before_the_354_is_counted_once_the_354_passes():
    """A client that does not wait for the 354 (aiosmtpd reads it all the same)."""
    stats: dict = {}
    with FaultServer(pipelining=True) as server, slow_relay(server, stats) as port:
        client = Client(port)
        try:
            client.group(b"EHLO client.test\r\n", replies=1)
            replies = client.group(envelope(0) + stuffed(0), replies=4)
            assert replies[2].startswith(b"354") and replies[3] == b"250 2.0.0 Ok: queued"
        finally:
            client.close()
        assert len(server.delivered) == 1
    assert stats["commands"] == {"EHLO": 1, "MAIL": 1, "RCPT": 1, "DATA": 1, ".": 1}
    assert stats["trips"] == {"greeting": 1, "EHLO": 1, "MAIL": 1}
    assert stats["messages"] == 1


def test_bdat_windows_several_messages_per_round_trip():
    plan = FaultPlan(per_address={"r8@example.com": Fault("rcpt", "reply", 550)})
    stats: dict = {}
    with FaultServer(plan, chunking=True) as server, slow_relay(server, stats) as port:
        client = Client(port)
        chunks = 0
        try:
            client.group(b"EHLO client.test\r\n", replies=1)
            # a window of 4 messages in one write
            replies = client.group(b"".join(bdat_message(n) for n in range(4)), replies=12)
            assert all(reply.startswith(b"250 ") for reply in replies)
            chunks += sum(len(body(n)) for n in range(4))
            # one message in two chunks: only BDAT ... LAST ends it
            data = body(4)
            two = envelope(4, b"BDAT 10") + data[:10] + b"BDAT %d LAST\r\n" % (len(data) - 10)
            replies = client.group(two + data[10:], replies=4)
            assert replies[2] == b"250 2.0.0 Ok: 10 bytes" and b"queued" in replies[3]
            chunks += len(data)
            # a window cut inside a chunk (5's BDAT LAST stays unanswered until the rest
            # comes, so no trip starts) and inside the next BDAT line; that line is whole
            # only once every reply before it came back: a command sent with nothing
            # outstanding, so it starts a trip ("BDAT")
            window = bdat_message(5) + bdat_message(6)
            cut_chunk = bdat_message(5).index(b"\r\n\r\n")  # in 5's chunk, at its headers' end
            cut_line = len(bdat_message(5)) + bdat_message(6).index(b"BDAT") + 3  # "BDA|T ..."
            replies = client.group(window[:cut_chunk], window[cut_chunk:cut_line], replies=5)
            replies += client.group(window[cut_line:], replies=1)
            assert all(reply.startswith(b"250 ") for reply in replies), replies
            chunks += len(body(5)) + len(body(6))
            # a refused recipient in a window: its BDAT LAST still answers (554), in order
            replies = client.group(b"".join(bdat_message(n) for n in (7, 8, 9)), replies=9)
            assert replies[4].startswith(b"550") and replies[5].startswith(b"554")
            chunks += sum(len(body(n)) for n in (7, 8, 9))
            assert client.group(b"QUIT\r\n", replies=1) == [b"221 Bye"]
        finally:
            client.close()
        numbers = [item.rcpt_tos[0] for item in server.delivered]
        assert server.commands["BDAT"] == 11 and server.commands["DATA"] == 0
    assert numbers == [f"r{n}@example.com" for n in (0, 1, 2, 3, 4, 5, 6, 7, 9)]
    assert server.delivered[4].data == body(4)
    assert stats["commands"] == {"EHLO": 1, "MAIL": 10, "RCPT": 10, "BDAT": 11, "QUIT": 1}
    assert stats["trips"] == {"greeting": 1, "EHLO": 1, "MAIL": 4, "BDAT": 1, "QUIT": 1}
    assert stats["messages"] == 10  # every BDAT LAST's reply, the 554 included
    assert stats["chunk_bytes"] == chunks
    assert stats["replies"] == 1 + 1 + 12 + 4 + 6 + 9 + 1
    assert stats["per_session"][0][0] == 10
