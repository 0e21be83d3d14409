"""A fault-injecting SMTP server for tests: a real aiosmtpd server that misbehaves on purpose.

A `FaultPlan` decides, for every SMTP command, whether a `Fault` strikes; a `FaultServer`
runs aiosmtpd in a thread on a free loopback port, applies the plan and records what it
accepted and what it did::

    plan = FaultPlan(per_address={"gone@example.com": Fault("rcpt", "reply", 550)})
    with FaultServer(plan) as server:
        ...  # point the sender at server.host, server.port
    assert server.count_by_recipient()["ok@example.com"] == 1

Decision points ("stages") are: the new connection ("connect", before the greeting), each
MAIL FROM ("mail"), each RCPT TO ("rcpt") and each end of a message ("data": the final "."
of DATA, or `BDAT <n> LAST`, once the whole body has arrived). At each one the plan is asked
once; what it answers wins, in this order:

1. `down_until` (connect only): before that `time.monotonic()` deadline every new connection
   is refused, closed at once (`down_mode="close"`) or greeted with a 421 (`down_mode="421"`).
2. `per_address`: a fault that always strikes for that address (the sender at "mail", the
   recipient at "rcpt", any recipient of the message at "data"), e.g. a permanent 550.
3. `first_n`: the first n DATA attempts for that recipient get a 451, later ones succeed.
4. `rate` and `faults`: with probability `rate` one of the `faults` for this stage strikes.
   Exactly one `random()` is drawn per decision point (plus one `choice()` when it strikes),
   so for a seed the same command sequence always gets the same decisions.

BDAT (RFC 3030): `FaultServer(chunking=True)` offers CHUNKING (and PIPELINING) and takes
`BDAT <size> [LAST]` the way Postfix 3.7's smtpd does, so a sender can stream windows of
`MAIL`, `RCPT`, `BDAT n LAST` without waiting:

- the chunk's bytes are always read, even when the command is refused, so what was pipelined
  after it is read as commands again; a size that is not a number gets a 501 and the
  connection is closed (nobody can tell where the next command starts);
- no MAIL: `503 5.5.1 Error: need MAIL command`; no accepted recipient:
  `554 5.5.1 Error: no valid recipients`; chunks without LAST accumulate (250 each);
  `BDAT n LAST` is the "data" stage, records the message as DATA does and answers
  `250 2.0.0 Ok: <size> bytes queued as <id>`;
- a refused BDAT resets the transaction, as Postfix does (the next pipelined MAIL gets 250).
  `reset_after_failed_bdat=False` is a stricter server: the failed transaction stays, and
  MAIL (`503 5.5.1 Error: nested MAIL command`), RCPT, DATA and BDAT get a 503 until RSET;
- DATA, RCPT or MAIL while a BDAT message is open: 503. `server.commands` counts every
  command verb the server got, so a test can tell the BDAT path from the DATA path.

A test may change `rate`, `faults`, `per_address`, `first_n`, `down_until` or `down_mode`
while the server runs (plain attribute assignment; decisions are taken under a lock).

aiosmtpd notes: `Controller.start()` opens one connection itself to wake the server up;
the server only applies faults and counts connections once `start()` has returned, so that
probe never shows. After `transport.abort()` aiosmtpd still pushes the handler's reply:
the write is dropped (the transport is closed) and the pending `drain()` yields to
`connection_lost()`, which cancels the session task; nothing is sent and nothing is logged.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from newsletter.capture import free_port

Stage = Literal["connect", "mail", "rcpt", "data"]
Kind = Literal["reply", "drop_before", "drop_after", "slow"]
STAGES: tuple[Stage, ...] = ("connect", "mail", "rcpt", "data")
KINDS: tuple[Kind, ...] = ("reply", "drop_before", "drop_after", "slow")

DEFAULT_TEXT = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.1 Mailbox unavailable, try again later",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message size exceeds fixed maximum message size",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.0.0 Transaction failed",
}


@dataclass(frozen=True)
class Fault:
    """What goes wrong, and when.

    - `reply`: answer `code` (4xx/5xx) at that stage; at "connect" it is the greeting and the
      connection is then closed; a 421 at any stage closes the connection after the reply.
    - `drop_before`: abort the TCP connection without replying; at "data" the message is
      not accepted.
    - `drop_after` ("data" only): accept and record the message, then abort the connection
      before the 250 is sent, so the client cannot know it was delivered.
    - `slow`: wait `delay` seconds, then answer normally. If the client gives up first, the
      command is abandoned (at "data": the message is not recorded).
    """

    stage: Stage
    kind: Kind
    code: int = 0
    message: str = ""
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; one of {STAGES}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; one of {KINDS}")
        if self.kind == "reply":
            if not 400 <= self.code <= 599:
                raise ValueError(f"a reply fault needs a 4xx or 5xx code, not {self.code}")
            if not self.message:
                default = DEFAULT_TEXT.get(self.code) or (
                    "4.0.0 Temporary failure" if self.code < 500 else "5.0.0 Permanent failure"
                )
                object.__setattr__(self, "message", default)
        if self.kind == "drop_after" and self.stage != "data":
            raise ValueError("drop_after is only meaningful at the data stage")
        if self.kind == "slow" and self.delay < 0:
            raise ValueError("a slow fault needs a delay >= 0")

    @property
    def reply(self) -> str:
        """The SMTP reply line of a `reply` fault."""
        return f"{self.code} {self.message}"

    @property
    def label(self) -> str:
        """How the fault shows in `FaultServer.events`: "reply 451", "drop_before", "slow 0.5"."""
        if self.kind == "reply":
            return f"reply {self.code}"
        if self.kind == "slow":
            return f"slow {self.delay:g}"
        return self.kind


def _lookup(mapping: Mapping[str, Any], address: str) -> Any:
    """The value for an address, compared case-insensitively."""
    folded = address.casefold()
    for key, value in mapping.items():
        if key.casefold() == folded:
            return value
    return None


class FaultPlan:
    """Decides, per SMTP command, whether a fault strikes. Deterministic for a seed.

    The precedence of `down_until`, `per_address`, `first_n` and `rate` is described in the
    module docstring. `attempts` counts the DATA attempts seen per `first_n` address
    (keyed by the casefolded address).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        rate: float = 0.0,
        faults: Sequence[Fault] = (),
        per_address: Mapping[str, Fault] | None = None,
        first_n: Mapping[str, int] | None = None,
        down_until: float | None = None,
        down_mode: Literal["close", "421"] = "close",
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        for address, fault in (per_address or {}).items():
            if fault.stage == "connect":
                raise ValueError(f"{address}: a per-address fault cannot strike at connect")
        if down_mode not in ("close", "421"):
            raise ValueError(f"down_mode must be 'close' or '421', not {down_mode!r}")
        self.rate = rate
        self.faults: Sequence[Fault] = tuple(faults)
        self.per_address: dict[str, Fault] = dict(per_address or {})
        self.first_n: dict[str, int] = dict(first_n or {})
        self.down_until = down_until
        self.down_mode = down_mode
        self.attempts: collections.Counter[str] = collections.Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def is_down(self) -> bool:
        """True while `down_until` lies in the future."""
        deadline = self.down_until
        return deadline is not None and time.monotonic() < deadline

    def decide(self, stage: Stage, addresses: Sequence[str] = ()) -> Fault | None:
        """The fault that strikes at this command, or None to answer normally.

        `addresses`: the sender at "mail", the recipient at "rcpt", every recipient of the
        message at "data", nothing at "connect". The server calls this once per command.
        """
        with self._lock:
            candidates = [fault for fault in self.faults if fault.stage == stage]
            strikes = self._random.random() < self.rate
            drawn = self._random.choice(candidates) if strikes and candidates else None

            if stage == "connect" and self.is_down():
                if self.down_mode == "421":
                    return Fault("connect", "reply", 421, "4.3.2 Service not available")
                return Fault("connect", "drop_before")
            for address in addresses:
                fault = _lookup(self.per_address, address)
                if fault is not None and fault.stage == stage:
                    return fault
            if stage == "data":
                transient = False
                for address in addresses:
                    limit = _lookup(self.first_n, address)
                    if limit:
                        self.attempts[address.casefold()] += 1
                        transient |= self.attempts[address.casefold()] <= limit
                if transient:
                    return Fault("data", "reply", 451, "4.3.0 Try again later (first_n)")
            return drawn


@dataclass(frozen=True)
class Delivered:
    """A message the server accepted (with `drop_after`, one the client never heard of)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: tuple[str, int]
    time: float  # time.monotonic() when it was accepted

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


class _Envelope(Envelope):
    """aiosmtpd's envelope plus the BDAT state; aiosmtpd makes a new one at RSET, EHLO and
    after each message, so that state can never outlive its transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.bdat = False  # a BDAT message is open (a chunk without LAST was accepted)
        self.failed = False  # strict mode: a refused BDAT left this transaction unusable


BDAT_SYNTAX = "501 5.5.4 Syntax: BDAT count [LAST]"
NEED_RSET = "503 5.5.1 Error: transaction failed, send RSET"
_DISCARD_PIECE = 65536


def _parse_bdat(arg: str | None) -> tuple[int | None, bool, bool]:
    """(size or None when it is not a number, LAST given, the rest well formed)."""
    words = (arg or "").split()
    if not words or not words[0].isascii() or not words[0].isdigit():
        return None, False, False
    last = len(words) == 2 and words[1].upper() == "LAST"
    return int(words[0]), last, len(words) == 1 or last


class _FaultSMTP(SMTP):
    """aiosmtpd's SMTP session with the connect stage, 421 closing the connection, BDAT,
    and every command counted."""

    def __init__(self, handler: _FaultHandler, **kwargs: Any) -> None:
        self.fault_server = handler.fault_server  # before aiosmtpd's __init__ reads `chunking`
        self.handler = handler
        self._hung_up = False
        super().__init__(handler, **kwargs)
        # aiosmtpd dispatches through this table; wrapping it counts what really arrived
        self._smtp_methods = {
            verb: self._counted(verb, method) for verb, method in self._smtp_methods.items()
        }

    def _counted(self, verb: str, method: Any) -> Any:
        @functools.wraps(method)  # keeps the @syntax text HELP reads
        async def counted(arg: str | None) -> None:
            if self._hung_up:  # a buffered command after a hang-up: end the task now
                raise asyncio.CancelledError
            self.fault_server._command(verb)
            await method(arg)

        return counted

    def _create_envelope(self) -> _Envelope:
        return _Envelope()

    def _transaction(self) -> _Envelope:
        assert isinstance(self.envelope, _Envelope)
        return self.envelope

    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802
        """Postfix's 503 for MAIL inside a transaction (an open BDAT message included)."""
        if self.session is not None and self.session.host_name and self._transaction().mail_from:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802
        envelope = self._transaction()
        if envelope.failed:
            await self.push(NEED_RSET)
            return
        if envelope.bdat:
            await self.push("503 5.5.1 Error: RCPT after BDAT")
            return
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        envelope = self._transaction()
        if envelope.failed:
            await self.push(NEED_RSET)
            return
        if envelope.bdat:
            await self.push("503 5.5.1 Error: DATA after BDAT")
            return
        await super().smtp_DATA(arg)

    @property
    def chunking(self) -> bool:
        """Whether BDAT is offered (HELP lists it only then)."""
        return self.fault_server.chunking

    @syntax("BDAT count [LAST]", when="chunking")
    async def smtp_BDAT(self, arg: str | None) -> None:  # noqa: N802
        """RFC 3030 chunks; see the module docstring for the replies (those of Postfix 3.7)."""
        recorder = self.fault_server
        if not self.chunking:  # what aiosmtpd says to a command it does not know
            await self.push('500 Error: command "BDAT" not recognized')
            return
        size, last, well_formed = _parse_bdat(arg)
        if size is None:
            await self.push(BDAT_SYNTAX)
            self._hang_up()  # where the chunk ends is unknowable
            return
        envelope = self._transaction()
        refusal = None
        if not well_formed:
            refusal = BDAT_SYNTAX
        elif self.session is None or not self.session.host_name:
            refusal = "503 5.5.1 Error: send HELO/EHLO first"
        elif envelope.failed:
            refusal = NEED_RSET
        elif not envelope.mail_from:
            refusal = "503 5.5.1 Error: need MAIL command"
        elif not envelope.rcpt_tos:
            refusal = "554 5.5.1 Error: no valid recipients"
        if refusal is not None:
            if not await self._discard(size):
                return
            await self._refuse_bdat(refusal)
            return
        try:
            chunk = await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:  # the client hung up inside its chunk
            return
        envelope.chunks.append(chunk)
        if not last:
            envelope.bdat = True
            await self.push(f"250 2.0.0 Ok: {size} bytes")
            return
        content = b"".join(envelope.chunks)
        envelope.chunks = []
        envelope.content = envelope.original_content = content
        reply = await self.handler._strike(self, "data", list(envelope.rcpt_tos))
        if reply is not None:
            await self._refuse_bdat(reply)
            return
        recorder._deliver(self.session, envelope)
        self._set_post_data_state()
        await self.push(f"250 2.0.0 Ok: {len(content)} bytes queued as {recorder._queue_id()}")

    async def _discard(self, size: int) -> bool:
        """Read and drop a refused chunk piece by piece; False if the client hung up first."""
        while size > 0:
            piece = await self._reader.read(min(size, _DISCARD_PIECE))
            if not piece:
                return False
            size -= len(piece)
        return True

    async def _refuse_bdat(self, reply: str) -> None:
        """Reset the transaction as Postfix does, or keep it failed (a stricter server)."""
        envelope = self._transaction()
        if self.fault_server.reset_after_failed_bdat or not envelope.mail_from:
            self._set_rset_state()
        else:
            envelope.chunks = []
            envelope.failed = True
        await self.push(reply)

    async def _handle_client(self) -> None:
        # aiosmtpd sends the greeting at the top of _handle_client(): act before it.
        recorder = self.fault_server
        if recorder.armed:
            recorder._opened()
            fault = recorder.plan.decide("connect")
            recorder._event("connect", "", fault.label if fault else "ok")
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            elif fault is not None:
                if fault.kind == "reply":
                    await self.push(fault.reply)
                    self._hang_up()
                elif self.transport is not None:  # drop_before
                    self.transport.abort()
                return
        await super()._handle_client()

    async def push(self, status: str | bytes) -> None:
        await super().push(status)
        line = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if line[:3] == "421" and line[3:4] != "-":
            self._hang_up()  # RFC 5321 3.8: 421, then close the channel

    def _hang_up(self) -> None:
        """Close after the replies already written, and read no more commands.

        `transport.close()` alone lets aiosmtpd's loop go on with commands already in its
        buffer (a pipelined window would still be served, even delivered); cancelling the
        session task, as aiosmtpd's QUIT does, stops it at its next await. A buffered line
        is read without awaiting, so `_counted` refuses to dispatch it.
        """
        self._hung_up = True
        if self.transport is not None:
            self.transport.close()
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()


class _FaultHandler:
    """aiosmtpd handler hooks for MAIL, RCPT and DATA that consult the plan."""

    def __init__(self, fault_server: FaultServer) -> None:
        self.fault_server = fault_server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, ANN201, N802
        """aiosmtpd reads pipelined commands fine; advertise PIPELINING and CHUNKING when asked."""
        session.host_name = hostname
        if self.fault_server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if self.fault_server.chunking:
            responses.insert(-1, "250-CHUNKING")
        return responses

    async def _strike(self, server: SMTP, stage: Stage, addresses: Sequence[str]) -> str | None:
        """Apply the plan to this command and log one event: a reply to send, or None to go on."""
        recorder = self.fault_server
        if not recorder.armed:
            return None
        fault = recorder.plan.decide(stage, addresses)
        recorder._event(stage, ",".join(addresses), fault.label if fault else "ok")
        if fault is None:
            return None
        if fault.kind == "reply":
            return fault.reply
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind == "drop_after":
            recorder._deliver(server.session, server.envelope)
        if server.transport is not None:
            server.transport.abort()
        return "451 4.4.2 Connection dropped"  # never sent: the transport is gone

    async def handle_MAIL(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = await self._strike(server, "mail", (address,))
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = await self._strike(server, "rcpt", (address,))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        reply = await self._strike(server, "data", list(envelope.rcpt_tos))
        if reply is not None:
            return reply
        self.fault_server._deliver(session, envelope)
        return "250 2.0.0 Ok: queued"


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _FaultSMTP(self.handler, **self.SMTP_kwargs)


class FaultServer:
    """A real aiosmtpd server on 127.0.0.1 and a free port that follows a `FaultPlan`.

    Use it as a context manager, or call `start()` and `stop()`. Every list it exposes is a
    copy taken under a lock, so tests can read it while the server runs.

    `chunking=True` offers CHUNKING and takes BDAT; PIPELINING is then offered too unless
    `pipelining=False` is given (Postfix offers both; `pipelining` defaults to `chunking`).
    `reset_after_failed_bdat` chooses what a refused BDAT leaves (module docstring).
    """

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        hostname: str = "127.0.0.1",
        enable_SMTPUTF8: bool = True,  # noqa: N803 (aiosmtpd's spelling)
        pipelining: bool | None = None,
        chunking: bool = False,
        reset_after_failed_bdat: bool = True,
    ) -> None:
        self.plan = plan if plan is not None else FaultPlan()
        self.chunking = chunking
        self.pipelining = chunking if pipelining is None else pipelining
        self.reset_after_failed_bdat = reset_after_failed_bdat
        self.host = hostname
        self.port = free_port(hostname)
        self.armed = False  # faults and counting start once start() has returned
        self._lock = threading.Lock()
        self._delivered: list[Delivered] = []
        self._events: list[tuple[str, str, str]] = []
        self._connections = 0
        self._commands: collections.Counter[str] = collections.Counter()
        self._queued = 0
        self._errors: list[str] = []
        self._controller = _Controller(
            _FaultHandler(self),
            hostname=hostname,
            port=self.port,
            server_hostname="faultsmtp.test",  # spares a getfqdn() per connection
            enable_SMTPUTF8=enable_SMTPUTF8,
            ready_timeout=10,
        )
        self._controller.loop.set_exception_handler(self._loop_error)

    # -- what tests read -----------------------------------------------------------------

    @property
    def delivered(self) -> list[Delivered]:
        """Every message the server accepted, in order."""
        with self._lock:
            return list(self._delivered)

    @property
    def events(self) -> list[tuple[str, str, str]]:
        """(stage, address or "", what happened) per decision: "ok", "reply 451", "drop_before"…

        At "data" the address is the message's recipients joined with ",".
        """
        with self._lock:
            return list(self._events)

    @property
    def connections(self) -> int:
        """TCP sessions opened since start() (refused ones included)."""
        with self._lock:
            return self._connections

    @property
    def commands(self) -> collections.Counter[str]:
        """How many of each command verb the server got since start() ("BDAT", "DATA"...).

        Counted as each command is dispatched, refused ones included, so a test can tell
        which path a sender took. BDAT counts even when CHUNKING is off; verbs aiosmtpd does
        not know (500 "not recognized") do not. The end-of-data "." and chunk bytes are not
        commands.
        """
        with self._lock:
            return collections.Counter(self._commands)

    @property
    def errors(self) -> list[str]:
        """Unhandled errors of the server's event loop; empty unless something is broken."""
        with self._lock:
            return list(self._errors)

    def count_by_recipient(self) -> collections.Counter[str]:
        """How many accepted messages each recipient got."""
        return collections.Counter(rcpt for item in self.delivered for rcpt in item.rcpt_tos)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultServer:
        self._controller.start()
        self.armed = True
        return self

    def stop(self) -> None:
        self.armed = False
        self._controller.stop()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- called from the server thread ---------------------------------------------------

    def _opened(self) -> None:
        with self._lock:
            self._connections += 1

    def _command(self, verb: str) -> None:
        if self.armed:
            with self._lock:
                self._commands[verb] += 1

    def _queue_id(self) -> str:
        """A Postfix-looking queue id for the 250 to BDAT LAST, unique per server."""
        with self._lock:
            self._queued += 1
            return f"{self._queued:010X}"

    def _event(self, stage: str, address: str, what: str) -> None:
        with self._lock:
            self._events.append((stage, address, what))

    def _deliver(self, session: Session | None, envelope: Envelope | None) -> None:
        assert session is not None and envelope is not None
        data = envelope.original_content or b""
        item = Delivered(
            str(envelope.mail_from),
            tuple(envelope.rcpt_tos),
            data,
            tuple(session.peer),  # type: ignore[arg-type]
            time.monotonic(),
        )
        with self._lock:
            self._delivered.append(item)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        with self._lock:
            self._errors.append(f"{context.get('message')}: {context.get('exception')!r}")
        loop.default_exception_handler(context)
