"""The fault-injecting test server itself, driven by plain aiosmtplib and smtplib clients."""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import re
import smtplib
import socket
import time
from collections.abc import Callable, Iterator

import aiosmtplib
import pytest
from faultsmtp import DEFAULT_TEXT, Fault, FaultPlan, FaultServer

SENDER = "news@daily.example.org"
MESSAGE = b"From: news@daily.example.org\r\nTo: reader@example.com\r\nSubject: Today\r\n\r\nHi.\r\n"
CODES = [421, 450, 451, 452, 550, 552, 553, 554]
# The server's delay is far past the client's timeout: on a loaded machine the client's
# hang-up can reach the server late, and must still come before the delay ends.
SLOW, CLIENT_TIMEOUT = 2.0, 0.2


@pytest.fixture
def serve(caplog) -> Iterator[Callable[..., FaultServer]]:
    """Start FaultServers; afterwards check neither asyncio nor aiosmtpd complained."""
    servers: list[FaultServer] = []

    def start(plan: FaultPlan | None = None, **options: bool) -> FaultServer:
        server = FaultServer(plan, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    gc.collect()  # a task whose exception nobody read reports it when collected
    assert [error for server in servers for error in server.errors] == []
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    noisy = [r for r in records if r.name in ("asyncio", "mail.log")]
    assert [r.getMessage() for r in noisy if r.levelno >= logging.WARNING] == []


async def _send(
    server: FaultServer, recipients: list[str], timeout: float, message: bytes, options: list[str]
) -> dict[str, aiosmtplib.SMTPResponse]:
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=timeout)
    await client.connect()
    try:
        refused, _ = await client.sendmail(SENDER, recipients, message, mail_options=options)
        await client.quit()
        return refused
    finally:
        client.close()


def send(
    server: FaultServer,
    *recipients: str,
    timeout: float = 2.0,
    message: bytes = MESSAGE,
    options: tuple[str, ...] = (),
) -> dict[str, aiosmtplib.SMTPResponse]:
    """One aiosmtplib connection, one message; returns the refused recipients."""
    rcpts = list(recipients) or ["reader@example.com"]
    return asyncio.run(_send(server, rcpts, timeout, message, list(options)))


def always(fault: Fault, seed: int = 0) -> FaultPlan:
    return FaultPlan(seed=seed, rate=1.0, faults=[fault])


def _address(stage: str) -> str:
    """The address an event of `send(server)` carries at that stage."""
    return {"connect": "", "mail": SENDER}.get(stage, "reader@example.com")


class Raw:
    """A bare socket client, to see exactly what the server sends and when it hangs up."""

    def __init__(self, server: FaultServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=2)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> bytes:
        """The last line of the next reply, or b"" at end of stream."""
        return self.lines()[-1]

    def lines(self) -> list[bytes]:
        """Every line of the next reply ([b""] at end of stream)."""
        lines = []
        while True:
            line = self.file.readline()
            lines.append(line.rstrip(b"\r\n"))
            if not line or line[3:4] != b"-":
                return lines

    def replies(self, count: int) -> list[bytes]:
        """The last lines of the next `count` replies (a pipelined group's answers)."""
        return [self.reply() for _ in range(count)]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, text: str | bytes) -> bytes:
        self.sock.sendall(text if isinstance(text, bytes) else text.encode() + b"\r\n")
        return self.reply()

    def at_eof(self) -> bool:
        return self.file.read() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# -- reply faults -------------------------------------------------------------------------


def _code(error: Exception) -> int:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return error.recipients[0].code
    assert isinstance(error, aiosmtplib.SMTPResponseException)
    return error.code


EXPECTED_ERROR = {
    "connect": aiosmtplib.SMTPConnectResponseError,
    "mail": aiosmtplib.SMTPSenderRefused,
    "rcpt": aiosmtplib.SMTPRecipientsRefused,
    "data": aiosmtplib.SMTPDataError,
}
REPLY_CASES = [("connect", 421), ("connect", 554)] + [
    (stage, code) for stage in ("mail", "rcpt", "data") for code in CODES
]


@pytest.mark.parametrize(("stage", "code"), REPLY_CASES)
def test_reply_fault_is_what_the_client_sees(serve, stage, code):
    server = serve(always(Fault(stage, "reply", code)))
    with pytest.raises(EXPECTED_ERROR[stage]) as caught:
        send(server)
    assert _code(caught.value) == code
    assert DEFAULT_TEXT[code] in str(caught.value)
    assert server.delivered == []
    assert server.events[-1] == (stage, _address(stage), f"reply {code}")


def test_reply_text_can_be_chosen(serve):
    server = serve(always(Fault("rcpt", "reply", 550, "5.1.1 No such user here")))
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
        send(server)
    assert caught.value.recipients[0].message == "5.1.1 No such user here"


def _dialog_until(raw: Raw, stage: str) -> bytes:
    """Drive a raw session up to the stage's reply and return it."""
    assert raw.command("EHLO client.test").startswith(b"250")
    reply = raw.command(f"MAIL FROM:<{SENDER}>")
    if stage == "mail":
        return reply
    reply = raw.command("RCPT TO:<reader@example.com>")
    if stage == "rcpt":
        return reply
    assert raw.command("DATA").startswith(b"354")
    return raw.command(MESSAGE + b".\r\n")


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_421_closes_the_connection_after_the_reply(serve, stage):
    raw = Raw(serve(always(Fault(stage, "reply", 421))))
    try:
        assert _dialog_until(raw, stage).startswith(b"421 4.3.2")
        assert raw.at_eof()
    finally:
        raw.close()


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_other_replies_keep_the_connection_open(serve, stage):
    server = serve(always(Fault(stage, "reply", 450)))
    raw = Raw(server)
    try:
        assert _dialog_until(raw, stage).startswith(b"450 ")
        assert raw.command("RSET") == b"250 OK"
        server.plan.rate = 0.0
        assert _dialog_until(raw, "data").startswith(b"250 ")
    finally:
        raw.close()
    assert len(server.delivered) == 1


def test_connect_reply_greets_with_the_code_and_hangs_up(serve):
    raw = Raw(serve(always(Fault("connect", "reply", 554))))
    try:
        assert raw.greeting == b"554 5.0.0 Transaction failed"
        assert raw.at_eof()
    finally:
        raw.close()


# -- drops ----------------------------------------------------------------------------------

DROP_ERROR = {
    "connect": aiosmtplib.SMTPConnectError,  # aiosmtplib wraps a lost greeting
    "mail": aiosmtplib.SMTPServerDisconnected,
    "rcpt": aiosmtplib.SMTPServerDisconnected,
    "data": aiosmtplib.SMTPServerDisconnected,
}


@pytest.mark.parametrize("stage", ["connect", "mail", "rcpt", "data"])
def test_drop_before_cuts_the_connection_and_accepts_nothing(serve, stage):
    server = serve(always(Fault(stage, "drop_before")))
    with pytest.raises(DROP_ERROR[stage]) as caught:
        send(server)
    assert not isinstance(caught.value, aiosmtplib.SMTPResponseException)  # no reply at all
    assert server.delivered == []
    assert server.events[-1] == (stage, _address(stage), "drop_before")
    server.plan.rate = 0.0  # the server keeps serving afterwards
    assert send(server) == {}
    assert len(server.delivered) == 1


def test_drop_after_data_keeps_the_message_the_client_never_heard_of(serve):
    server = serve(always(Fault("data", "drop_after")))
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        send(server, "reader@example.com")
    [item] = server.delivered
    assert item.rcpt_tos == ("reader@example.com",)
    assert item.mail_from == SENDER
    assert item.message["Subject"] == "Today"
    assert server.events[-1] == ("data", "reader@example.com", "drop_after")


def test_drop_after_with_smtplib(serve):
    server = serve(always(Fault("data", "drop_after")))
    with smtplib.SMTP(server.host, server.port, timeout=2) as client:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail(SENDER, ["reader@example.com"], MESSAGE)
    assert server.count_by_recipient() == collections.Counter({"reader@example.com": 1})


def test_drop_after_is_only_for_data():
    with pytest.raises(ValueError, match="drop_after"):
        Fault("rcpt", "drop_after")


# -- slow -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["connect", "mail", "rcpt", "data"])
def test_slow_pushes_the_client_past_its_timeout(serve, stage):
    server = serve(always(Fault(stage, "slow", delay=SLOW)))
    with pytest.raises(aiosmtplib.SMTPTimeoutError):  # the client gave up before the reply
        send(server, timeout=CLIENT_TIMEOUT)
    assert server.events[-1][2] == f"slow {SLOW:g}"
    if stage == "data":
        time.sleep(SLOW + 0.5)  # the fault's length: the server's wait is over, and then
    assert server.delivered == []  # the client hung up while the server waited


def test_slow_within_the_timeout_answers_normally(serve):
    server = serve(always(Fault("data", "slow", delay=0.3)))
    assert send(server, timeout=2.0) == {}
    assert server.events[-1] == ("data", "reader@example.com", "slow 0.3")  # it did wait
    assert len(server.delivered) == 1


# -- first_n and per_address ----------------------------------------------------------------


def test_first_n_attempts_get_451_then_succeed(serve):
    plan = FaultPlan(first_n={"flaky@example.com": 2})
    server = serve(plan)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            send(server, "flaky@example.com")
        assert caught.value.code == 451
    assert send(server, "flaky@example.com") == {}
    assert send(server, "flaky@example.com") == {}
    assert send(server, "steady@example.com") == {}
    assert server.count_by_recipient() == {"flaky@example.com": 2, "steady@example.com": 1}
    assert plan.attempts["flaky@example.com"] == 4
    outcomes = [what for stage, _, what in server.events if stage == "data"]
    assert outcomes == ["reply 451", "reply 451", "ok", "ok", "ok"]


def test_per_address_fault_always_strikes(serve):
    server = serve(FaultPlan(per_address={"gone@example.com": Fault("rcpt", "reply", 550)}))
    for recipient in ("gone@example.com", "Gone@Example.COM"):  # addresses compare caselessly
        refused = send(server, recipient, "ok@example.com")
        assert list(refused) == [recipient]
        assert refused[recipient].code == 550
    assert server.count_by_recipient() == {"ok@example.com": 2}
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        send(server, "gone@example.com")


def test_per_address_fault_at_data_strikes_the_whole_message(serve):
    server = serve(FaultPlan(per_address={"full@example.com": Fault("data", "reply", 552)}))
    with pytest.raises(aiosmtplib.SMTPDataError) as caught:
        send(server, "ok@example.com", "full@example.com")
    assert caught.value.code == 552
    assert server.events[-1] == ("data", "ok@example.com,full@example.com", "reply 552")
    assert server.delivered == []


def test_per_address_cannot_strike_at_connect():
    with pytest.raises(ValueError, match="connect"):
        FaultPlan(per_address={"x@example.com": Fault("connect", "drop_before")})


def test_smtputf8_addresses(serve):
    server = serve(FaultPlan(per_address={"gönül@exämple.org": Fault("rcpt", "reply", 553)}))
    message = "Subject: Grüße\r\n\r\nÇa va ?\r\n".encode()
    refused = send(server, "jösé@exämple.org", "gönül@exämple.org", message=message,
                   options=("SMTPUTF8",))  # fmt: skip
    assert refused["gönül@exämple.org"].code == 553
    [item] = server.delivered
    assert item.rcpt_tos == ("jösé@exämple.org",)
    assert item.data == message


# -- down_until -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "421"])
def test_down_until_refuses_connections_until_the_deadline(serve, mode):
    plan = FaultPlan(down_mode=mode)
    server = serve(plan)
    assert send(server) == {}
    deadline = time.monotonic() + 0.4
    plan.down_until = deadline  # flipped while the server runs
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPConnectError) as caught:
            send(server)
        if mode == "421":
            assert isinstance(caught.value, aiosmtplib.SMTPConnectResponseError)
            assert caught.value.code == 421
        else:
            assert not isinstance(caught.value, aiosmtplib.SMTPResponseException)
    while plan.is_down():  # until the deadline the test set passes (0.4 s)
        time.sleep(0.01)
    assert send(server) == {}
    assert len(server.delivered) == 2
    assert server.connections == 4
    refusal = "reply 421" if mode == "421" else "drop_before"
    connects = [what for stage, _, what in server.events if stage == "connect"]
    assert connects == ["ok", refusal, refusal, "ok"]


# -- the random plan ------------------------------------------------------------------------

MIXED = [
    Fault("mail", "reply", 451),
    Fault("rcpt", "reply", 450),
    Fault("rcpt", "reply", 550),
    Fault("data", "reply", 452),
]
COMMANDS = [("connect", ()), ("mail", (SENDER,)), ("rcpt", ("a@example.com",)), ("data", ("a",))]


def _decisions(seed: int) -> list[Fault | None]:
    plan = FaultPlan(seed=seed, rate=0.4, faults=MIXED)
    return [plan.decide(stage, addresses) for stage, addresses in COMMANDS * 25]


def test_a_seed_fixes_the_decisions():
    first = _decisions(7)
    assert first == _decisions(7)
    assert first != _decisions(8)
    struck = [fault for fault in first if fault is not None]
    assert 10 < len(struck) < 65  # about 0.4 of the 75 commands that have faults
    assert {fault.stage for fault in struck} == {"mail", "rcpt", "data"}
    assert all(fault is None for fault in first[::4])  # no connect faults in MIXED


def _run(serve, seed: int) -> tuple[list, list]:
    server = serve(FaultPlan(seed=seed, rate=0.4, faults=MIXED))
    outcomes = []
    for number in range(12):
        try:
            outcomes.append(send(server, f"r{number}@example.com"))
        except aiosmtplib.SMTPException as error:
            outcomes.append(type(error).__name__)
    return outcomes, server.events


def test_a_seeded_server_repeats_itself(serve):
    first = _run(serve, 3)
    assert first == _run(serve, 3)
    assert first != _run(serve, 4)
    assert "ok" in [what for _, _, what in first[1]]
    assert any(what.startswith("reply") for _, _, what in first[1])


def test_faults_can_be_flipped_at_runtime(serve):
    plan = always(Fault("rcpt", "reply", 450))
    server = serve(plan)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        send(server)
    plan.rate = 0.0
    assert send(server) == {}
    plan.faults = [Fault("data", "reply", 554)]
    plan.rate = 1.0
    with pytest.raises(aiosmtplib.SMTPDataError):
        send(server)
    assert len(server.delivered) == 1


# -- bookkeeping ----------------------------------------------------------------------------


def test_counts_connections_and_records_deliveries(serve):
    server = serve()
    for _ in range(3):
        send(server, "a@example.com", "b@example.com")
    assert server.connections == 3  # Controller.start()'s own probe is not counted
    assert server.count_by_recipient() == {"a@example.com": 3, "b@example.com": 3}
    assert len({item.peer for item in server.delivered}) == 3
    times = [item.time for item in server.delivered]
    assert times == sorted(times)
    assert server.events[:5] == [
        ("connect", "", "ok"),
        ("mail", SENDER, "ok"),
        ("rcpt", "a@example.com", "ok"),
        ("rcpt", "b@example.com", "ok"),
        ("data", "a@example.com,b@example.com", "ok"),
    ]


def test_context_manager_and_validation():
    with FaultServer() as server:
        assert send(server) == {}
    assert len(server.delivered) == 1
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Fault("rcpt", "reply", 250)
    with pytest.raises(ValueError, match="stage"):
        Fault("helo", "reply", 550)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(rate=1.5)
    assert Fault("rcpt", "reply", 499).message == "4.0.0 Temporary failure"


# -- BDAT (RFC 3030), pipelined windows and pipelined DATA ----------------------------------
# Every case writes the bytes itself, in the groups a streaming sender writes them, and reads
# the replies back in order: what Postfix 3.7's smtpd answers to the same bytes.

QUEUED = re.compile(rb"250 2\.0\.0 Ok: (\d+) bytes queued as [0-9A-F]+")
NEED_MAIL = b"503 5.5.1 Error: need MAIL command"
NO_RECIPIENTS = b"554 5.5.1 Error: no valid recipients"
NESTED = b"503 5.5.1 Error: nested MAIL command"
NEED_RSET = b"503 5.5.1 Error: transaction failed, send RSET"


def body(number: int) -> bytes:
    """A message whose bytes would confuse a server that parsed chunks as commands or dots."""
    return (
        f"From: {SENDER}\r\nTo: r{number}@example.com\r\nSubject: Number {number}\r\n\r\n"
        "MAIL FROM:<spoof@example.com>\r\n.\r\nQUIT\r\n..dotted\r\n"
    ).encode()


def bdat_message(number: int) -> bytes:
    """MAIL, RCPT and one `BDAT n LAST` with its chunk: one message of a window."""
    data = body(number)
    head = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r{number}@example.com>\r\nBDAT {len(data)} LAST\r\n"
    return head.encode() + data


def window(*numbers: int) -> bytes:
    return b"".join(bdat_message(number) for number in numbers)


def queued(reply: bytes, number: int) -> bool:
    """The 250 to BDAT LAST, for the whole of message `number`."""
    match = QUEUED.fullmatch(reply)
    return match is not None and int(match[1]) == len(body(number))


def ok_replies(*numbers: int) -> list[bytes | int]:
    """What a window of whole messages gets: 250, 250 and a queued 250 each (ints: queued)."""
    return [item for number in numbers for item in (b"250 OK", b"250 OK", number)]


def matches(replies: list[bytes], expected: list[bytes | int]) -> bool:
    return len(replies) == len(expected) and all(
        queued(got, want) if isinstance(want, int) else got == want
        for got, want in zip(replies, expected, strict=True)
    )


def delivered_numbers(server: FaultServer) -> list[int]:
    numbers = []
    for item in server.delivered:
        [rcpt] = item.rcpt_tos
        number = int(rcpt[1:].split("@")[0])
        assert item.data == body(number), "the chunk was recorded byte for byte"
        numbers.append(number)
    return numbers


def chunking_session(server: FaultServer) -> Raw:
    raw = Raw(server)
    assert raw.command("EHLO client.test").startswith(b"250 ")
    return raw


@pytest.mark.parametrize(
    ("options", "offered"),
    [
        ({}, set()),
        ({"pipelining": True}, {b"PIPELINING"}),
        ({"chunking": True}, {b"PIPELINING", b"CHUNKING"}),
        ({"chunking": True, "pipelining": False}, {b"CHUNKING"}),
    ],
)
def test_ehlo_offers_chunking_and_pipelining(serve, options, offered):
    raw = Raw(serve(**options))
    try:
        raw.send(b"EHLO client.test\r\n")
        keywords = {line[4:] for line in raw.lines()}
        assert keywords & {b"PIPELINING", b"CHUNKING"} == offered
        help_bdat = raw.command("HELP BDAT")
        assert (help_bdat == b"250 Syntax: BDAT count [LAST]") == (b"CHUNKING" in offered)
    finally:
        raw.close()


def test_a_window_of_four_bdat_messages_in_one_write(serve):
    server = serve(chunking=True)
    raw = chunking_session(server)
    try:
        raw.send(window(0, 1, 2, 3))  # 12 commands and 4 chunks, no wait between them
        replies = raw.replies(12)
        assert matches(replies, ok_replies(0, 1, 2, 3)), replies
        assert raw.command("NOOP") == b"250 OK"  # the chunks' "QUIT" lines were never commands
    finally:
        raw.close()
    assert delivered_numbers(server) == [0, 1, 2, 3]
    assert server.commands == {"EHLO": 1, "MAIL": 4, "RCPT": 4, "BDAT": 4, "NOOP": 1}
    assert [event for event in server.events if event[0] == "data"] == [
        ("data", f"r{number}@example.com", "ok") for number in range(4)
    ]


@pytest.mark.parametrize("reset", [True, False], ids=["postfix", "strict"])
def test_a_refused_rcpt_in_the_middle_of_a_window(serve, reset):
    plan = FaultPlan(per_address={"r1@example.com": Fault("rcpt", "reply", 550)})
    server = serve(plan, chunking=True, reset_after_failed_bdat=reset)
    raw = chunking_session(server)
    try:
        raw.send(window(0, 1, 2, 3))
        refused = [b"250 OK", b"550 5.1.1 Mailbox unavailable", NO_RECIPIENTS]
        if reset:  # Postfix: the refused BDAT ended the transaction, the window goes on
            expected = ok_replies(0) + refused + ok_replies(2, 3)
        else:  # strict: nothing goes until the client sends RSET
            expected = ok_replies(0) + refused + [NESTED, NEED_RSET, NEED_RSET] * 2
        replies = raw.replies(12)
        assert matches(replies, expected), replies
        if not reset:
            assert raw.command("RSET") == b"250 OK"
            raw.send(window(2, 3))
            replies = raw.replies(6)
            assert matches(replies, ok_replies(2, 3)), replies
    finally:
        raw.close()
    assert delivered_numbers(server) == [0, 2, 3]
    assert server.commands["BDAT"] == (4 if reset else 6)


@pytest.mark.parametrize("reset", [True, False], ids=["postfix", "strict"])
def test_a_451_at_bdat_last(serve, reset):
    plan = FaultPlan(per_address={"r1@example.com": Fault("data", "reply", 451)})
    server = serve(plan, chunking=True, reset_after_failed_bdat=reset)
    raw = chunking_session(server)
    try:
        raw.send(window(0, 1, 2))
        failed = [b"250 OK", b"250 OK", b"451 4.3.0 Local error in processing, try again later"]
        after = ok_replies(2) if reset else [NESTED, NEED_RSET, NEED_RSET]
        replies = raw.replies(9)
        assert matches(replies, ok_replies(0) + failed + after), replies
    finally:
        raw.close()
    assert delivered_numbers(server) == ([0, 2] if reset else [0])
    outcomes = [(address, what) for stage, address, what in server.events if stage == "data"]
    assert outcomes == [("r0@example.com", "ok"), ("r1@example.com", "reply 451")] + (
        [("r2@example.com", "ok")] if reset else []
    )


@pytest.mark.parametrize("kind", ["drop_before", "drop_after"])
def test_a_drop_at_bdat_last_loses_the_rest_of_the_window(serve, kind):
    plan = FaultPlan(per_address={"r1@example.com": Fault("data", kind)})
    server = serve(plan, chunking=True)
    raw = chunking_session(server)
    try:
        raw.send(window(0, 1, 2))
        replies = raw.replies(6)
        assert matches(replies, ok_replies(0) + [b"250 OK", b"250 OK", b""]), replies
        assert raw.at_eof()  # no reply to r1's BDAT, nothing for r2
    finally:
        raw.close()
    assert delivered_numbers(server) == ([0, 1] if kind == "drop_after" else [0])
    assert server.commands["MAIL"] == 2  # r2's commands were never read
    assert server.events[-1] == ("data", "r1@example.com", kind)


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_a_421_ends_the_session_before_what_was_pipelined_after_it(serve, chunking):
    plan = FaultPlan(per_address={"r0@example.com": Fault("data", "reply", 421)})
    server = serve(plan, chunking=chunking, pipelining=True)
    raw = chunking_session(server)
    try:
        if chunking:
            raw.send(window(0, 1))
            replies = raw.replies(3)
        else:
            raw.send(_data_envelope(0))
            assert raw.replies(3)[2].startswith(b"354")
            raw.send(_stuffed(0) + _data_envelope(1) + _stuffed(1))
            replies = [raw.reply()]
        assert replies[-1].startswith(b"421 4.3.2")
        assert raw.at_eof()
    finally:
        raw.close()
    assert server.delivered == []
    assert server.commands["MAIL"] == 1  # message 1 was in the server's buffer, never served


def test_bdat_chunks_without_last_accumulate_across_writes(serve):
    server = serve(chunking=True)
    raw = chunking_session(server)
    big = b"".join(b"line %06d of a long message\r\n" % n for n in range(8_000))  # ~260 KB
    try:
        raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r0@example.com>\r\n".encode())
        assert raw.replies(2) == [b"250 OK", b"250 OK"]
        raw.send(b"BDAT 12\r\nSubject: ")  # a chunk split across writes
        time.sleep(0.05)
        raw.send(b"x\r\n")
        assert raw.reply() == b"250 2.0.0 Ok: 12 bytes"
        raw.send(b"BDAT %d\r\n" % (len(big) + 2) + b"\r\n" + big[:1000])
        time.sleep(0.05)
        raw.send(big[1000:] + b"BDAT 0 LAST\r\n")
        replies = raw.replies(2)
        assert replies[0] == b"250 2.0.0 Ok: %d bytes" % (len(big) + 2)
        match = QUEUED.fullmatch(replies[1])
        assert match is not None and int(match[1]) == 14 + len(big)
    finally:
        raw.close()
    [item] = server.delivered
    assert item.data == b"Subject: x\r\n\r\n" + big
    assert item.message["Subject"] == "x"


REFUSED_CHUNKS = {
    # name: (commands before, their replies, the BDAT's reply)
    "no MAIL": (b"", [], NEED_MAIL),
    "no valid RCPT": (
        f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<gone@example.com>\r\n".encode(),
        [b"250 OK", b"550 5.1.1 Mailbox unavailable"],
        NO_RECIPIENTS,
    ),
    "no RCPT at all": (f"MAIL FROM:<{SENDER}>\r\n".encode(), [b"250 OK"], NO_RECIPIENTS),
    "not LAST": (b"", [], b"501 5.5.4 Syntax: BDAT count [LAST]"),
}


@pytest.mark.parametrize("case", list(REFUSED_CHUNKS))
@pytest.mark.parametrize("reset", [True, False], ids=["postfix", "strict"])
def test_a_refused_bdat_still_swallows_its_chunk(serve, case, reset):
    plan = FaultPlan(per_address={"gone@example.com": Fault("rcpt", "reply", 550)})
    server = serve(plan, chunking=True, reset_after_failed_bdat=reset)
    before, their_replies, refusal = REFUSED_CHUNKS[case]
    keyword = b"FINAL" if case == "not LAST" else b"LAST"
    raw = chunking_session(server)
    try:
        raw.send(before + b"BDAT 12 " + keyword + b"\r\nQUIT\r\nRSET\r\nNOOP\r\n")
        replies = raw.replies(len(their_replies) + 2)
        assert replies == [*their_replies, refusal, b"250 OK"]  # NOOP: read as a command
        next_mail = raw.command(f"MAIL FROM:<{SENDER}>")
        kept = not reset and before  # strict, and a transaction was open
        assert next_mail == (NESTED if kept else b"250 OK")
    finally:
        raw.close()
    assert server.commands["QUIT"] == server.commands["RSET"] == 0
    assert server.delivered == []


def test_bdat_before_ehlo_is_refused_and_its_chunk_swallowed(serve):
    raw = Raw(serve(chunking=True))
    try:
        raw.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
        assert raw.replies(2) == [b"503 5.5.1 Error: send HELO/EHLO first", b"250 OK"]
    finally:
        raw.close()


def test_a_bdat_size_that_is_not_a_number_closes_the_connection(serve):
    server = serve(chunking=True)
    raw = chunking_session(server)
    try:
        raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r0@example.com>\r\n".encode())
        raw.send(b"BDAT ten LAST\r\nNOOP\r\n")
        assert raw.replies(3) == [b"250 OK", b"250 OK", b"501 5.5.4 Syntax: BDAT count [LAST]"]
        assert raw.at_eof()
    finally:
        raw.close()
    assert server.commands["NOOP"] == 0


def test_data_rcpt_and_mail_while_a_bdat_message_is_open(serve):
    server = serve(chunking=True)
    raw = chunking_session(server)
    try:
        raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r0@example.com>\r\nBDAT 5\r\nHi.\r\n".encode())
        assert raw.replies(3) == [b"250 OK", b"250 OK", b"250 2.0.0 Ok: 5 bytes"]
        assert raw.command("DATA") == b"503 5.5.1 Error: DATA after BDAT"
        assert raw.command(f"MAIL FROM:<{SENDER}>") == NESTED
        assert raw.command("RCPT TO:<r9@example.com>") == b"503 5.5.1 Error: RCPT after BDAT"
        raw.send(b"BDAT 3 LAST\r\nBye")  # the open message was never disturbed
        match = QUEUED.fullmatch(raw.reply())
        assert match is not None and match[1] == b"8"
        # RSET drops an open BDAT message: its later chunks find no transaction
        raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r1@example.com>\r\nBDAT 2\r\nab".encode())
        assert raw.replies(3) == [b"250 OK", b"250 OK", b"250 2.0.0 Ok: 2 bytes"]
        assert raw.command("RSET") == b"250 OK"
        raw.send(b"BDAT 2 LAST\r\ncd")
        assert raw.reply() == NEED_MAIL
    finally:
        raw.close()
    [item] = server.delivered
    assert (item.rcpt_tos, item.data) == (("r0@example.com",), b"Hi.\r\nBye")


def test_bdat_on_a_server_without_chunking_is_unknown_and_its_chunk_read_as_commands(serve):
    server = serve(pipelining=True)
    raw = chunking_session(server)
    try:
        raw.send(b"BDAT 6 LAST\r\nNOOP\r\n")
        assert raw.replies(2) == [b'500 Error: command "BDAT" not recognized', b"250 OK"]
    finally:
        raw.close()
    assert server.commands["BDAT"] == server.commands["NOOP"] == 1


def test_data_still_works_with_chunking_on(serve):
    server = serve(chunking=True)
    assert send(server, "r0@example.com", message=body(0)) == {}  # aiosmtplib: no BDAT
    assert delivered_numbers(server) == [0]
    assert server.commands["DATA"] == 1 and server.commands["BDAT"] == 0


def _data_envelope(number: int) -> bytes:
    return f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r{number}@example.com>\r\nDATA\r\n".encode()


def _stuffed(number: int) -> bytes:
    """body(number) as it travels in DATA: dot-stuffed, then the final dot."""
    return body(number).replace(b"\r\n.", b"\r\n..") + b".\r\n"


@pytest.mark.parametrize("chunking", [False, True], ids=["plain", "chunking"])
def test_a_body_end_and_the_next_envelope_in_one_write_over_data(serve, chunking):
    server = serve(chunking=chunking, pipelining=True)
    raw = chunking_session(server)
    try:
        raw.send(_data_envelope(0))
        assert raw.replies(3) == [b"250 OK", b"250 OK", b"354 End data with <CR><LF>.<CR><LF>"]
        raw.send(_stuffed(0) + _data_envelope(1))  # RFC 2920: the content starts a group
        replies = raw.replies(4)
        assert replies[0] == b"250 2.0.0 Ok: queued"
        assert replies[1:] == [b"250 OK", b"250 OK", b"354 End data with <CR><LF>.<CR><LF>"]
        raw.send(_stuffed(1) + b"QUIT\r\n")
        assert raw.replies(2) == [b"250 2.0.0 Ok: queued", b"221 Bye"]
    finally:
        raw.close()
    assert delivered_numbers(server) == [0, 1]
    assert server.commands == {"EHLO": 1, "MAIL": 2, "RCPT": 2, "DATA": 2, "QUIT": 1}
