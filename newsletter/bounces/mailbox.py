"""Reading what arrives at the bounce address: a Maildir, one message on stdin, or IMAP.

Each message is read in isolation: `parse.read_report` never raises, and any
other exception while reading one makes it UNREADABLE (set aside, never tried
again) while the others go on. Only a database error stops a run; the message
it was on stays where it was, for the next run (which, if it had been recorded,
finds it DUPLICATE: nothing counts twice).

Every message is moved aside with its outcome; nothing is deleted:

    recorded, duplicate -> .processed      unmatched, unknown -> .unknown
    ignored             -> .ignored        unreadable         -> .poison

In a Maildir these are Maildir++ subfolders (`maildir.subfolder`, shared with
the unsubscribe reader `inbound.py`); over IMAP, mailboxes under the polled one
(`INBOX.processed`, with the server's separator), created when missing. One run
reads the mailbox once (a timer or cron polls); at most MAX_PER_RUN messages.
"""

from __future__ import annotations

import imaplib
import ipaddress
import logging
import re
import ssl
import sys
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine

from newsletter.bounces.parse import read_report
from newsletter.bounces.record import BounceOutcome, BounceResult, apply_report, fingerprint_of
from newsletter.bounces.verp import BounceAddresses, bounce_addresses
from newsletter.config import Settings
from newsletter.errors import InputError, MailboxError
from newsletter.hygiene import one_line
from newsletter.logs import event
from newsletter.maildir import (
    POISON_FOLDER,
    move_out_of_new,
    new_folder,
    new_messages,
    read_message,
    subfolder,
)
from newsletter.tokens import signer_for

log = logging.getLogger("newsletter.bounces")

MAX_REPORT_BYTES = 2 * 1024 * 1024  # a DSN quotes the message (Postfix: 50 KB of it); some all
MAX_PER_RUN = 5000  # messages one run reads; the next run takes the rest
IMAP_TIMEOUT = 30.0  # seconds for each IMAP command's answer
FOLDERS = {
    BounceOutcome.RECORDED: ".processed",
    BounceOutcome.DUPLICATE: ".processed",
    BounceOutcome.IGNORED: ".ignored",
    BounceOutcome.UNMATCHED: ".unknown",
    BounceOutcome.UNKNOWN: ".unknown",
    BounceOutcome.UNREADABLE: POISON_FOLDER,
}


@dataclass(frozen=True)
class Reader:
    """What reading one message needs: the store, the settings, the VERP addresses."""

    engine: Engine
    settings: Settings
    source: str  # maildir | stdin | imap

    def process(self, data: bytes) -> BounceResult:
        """One message's bytes, read and recorded (database errors propagate)."""
        if len(data) > MAX_REPORT_BYTES:
            return _unreadable(f"too big (over {MAX_REPORT_BYTES // 1024} KB)")
        try:
            report = read_report(data)
            fingerprint = fingerprint_of(data)
        except Exception as exc:  # hostile or broken input: a result, never a crash
            log.debug("unreadable report", exc_info=exc)
            return _unreadable(f"{type(exc).__name__}: {one_line(str(exc))}"[:300])
        return apply_report(
            self.engine,
            self.settings,
            self.verp,
            report,
            fingerprint=fingerprint,
            source=self.source,
        )

    @cached_property
    def verp(self) -> BounceAddresses | None:
        """The VERP addresses (the SECRET_KEY is needed only with BOUNCE_ADDRESS set)."""
        if not self.settings.bounce_address:
            return None
        return bounce_addresses(self.settings, signer_for(self.settings))


def process_stream(
    engine: Engine, settings: Settings, stream: BinaryIO | None = None
) -> BounceResult:
    """One message from a stream (stdin by default): for a mail server's pipe delivery."""
    source = stream if stream is not None else sys.stdin.buffer
    return Reader(engine, settings, "stdin").process(source.read(MAX_REPORT_BYTES + 1))


def process_maildir(engine: Engine, settings: Settings, path: Path | str) -> list[BounceResult]:
    """Every message of `path/new`, oldest first, each moved to its outcome's folder."""
    root = Path(path)
    new = new_folder(root)
    reader = Reader(engine, settings, "maildir")
    results = []
    for entry in new_messages(new)[:MAX_PER_RUN]:
        try:
            data = read_message(entry, MAX_REPORT_BYTES)
        except (InputError, OSError) as exc:  # a FIFO, a link, too big, unreadable
            detail = exc.message if isinstance(exc, InputError) else (exc.strerror or str(exc))
            result = _unreadable(detail)
        else:
            result = reader.process(data)
        target = move_out_of_new(entry, subfolder(root, FOLDERS[result.outcome]), "S")
        if result.outcome is BounceOutcome.UNREADABLE:
            event(log, "bounce_set_aside", level=logging.WARNING, path=target, why=result.detail)
        results.append(replace(result, path=target))
    return results


# IMAP


@dataclass(frozen=True)
class ImapTarget:
    host: str
    port: int
    user: str
    password: str
    mailbox: str
    tls: bool  # imaps://: TLS from the start; imap://: STARTTLS when offered


def imap_target(url: str) -> ImapTarget:
    """`imap[s]://user:password@host[:port]/MAILBOX` (MAILBOX defaults to INBOX)."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
        raise InputError(
            "not an IMAP URL",
            where="--imap",
            hint="write it as imaps://user:password@host/INBOX (imap:// for STARTTLS)",
        )
    try:
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
    except ValueError:
        raise InputError("the port is not a number", where="--imap", hint="e.g. :993") from None
    return ImapTarget(
        parts.hostname,
        port,
        unquote(parts.username),
        unquote(parts.password or ""),
        unquote(parts.path.lstrip("/")) or "INBOX",
        parts.scheme == "imaps",
    )


def process_imap(engine: Engine, settings: Settings, url: str) -> list[BounceResult]:
    """Every message in the mailbox, each moved to its outcome's mailbox (created if missing).

    Raises MailboxError when the server cannot be reached, refuses the login or a command.
    """
    target = imap_target(url)
    if not target.password:
        target = replace(target, password=settings.bounce_imap_password.get_secret_value())
    where = f"imap {target.host}:{target.port}/{target.mailbox}"
    try:
        client = _connect(target)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(
            f"cannot reach the IMAP server: {one_line(str(exc)) or type(exc).__name__}",
            where=where,
            hint="check the host and port in --imap, and that the server is up",
        ) from None
    try:
        _login(client, target, where)
        return _process_mailbox(client, Reader(engine, settings, "imap"), target.mailbox)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(
            f"the IMAP server failed: {one_line(str(exc)) or type(exc).__name__}",
            where=where,
            hint="check the mailbox in --imap, and the server's log",
        ) from None
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _connect(target: ImapTarget) -> imaplib.IMAP4:
    context = ssl.create_default_context()
    if target.tls:
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            target.host, target.port, ssl_context=context, timeout=IMAP_TIMEOUT
        )
    else:
        client = imaplib.IMAP4(target.host, target.port, timeout=IMAP_TIMEOUT)
        if "STARTTLS" in client.capabilities:
            client.starttls(context)
        elif not _is_loopback(target.host):
            client.shutdown()
            raise imaplib.IMAP4.error(
                "it offers no STARTTLS, and the password would cross the network in clear "
                "(use imaps://)"
            )
    return client


def _login(client: imaplib.IMAP4, target: ImapTarget, where: str) -> None:
    try:
        _ok(client.login(target.user, target.password))
    except imaplib.IMAP4.error as exc:
        raise MailboxError(
            f"the IMAP server refused the login: {one_line(str(exc))}",
            where=where,
            hint="check the user and password in --imap (or NEWSLETTER_BOUNCE_IMAP_PASSWORD)",
        ) from None
    # What the server offers once logged in (MOVE, UIDPLUS): imaplib keeps the greeting's.
    answer = _ok(client.capability())
    client.capabilities = tuple(answer[-1].decode(errors="replace").upper().split())


def _process_mailbox(client: imaplib.IMAP4, reader: Reader, mailbox: str) -> list[BounceResult]:
    _ok(client.select(_quote(mailbox)))
    separator = _separator(client)
    can_move = "MOVE" in client.capabilities
    created: set[str] = set()
    results = []
    uids = _ok(client.uid("SEARCH", "ALL"))[0].split()[:MAX_PER_RUN]
    for uid in uids:
        result = reader.process(_fetch(client, uid))
        folder = f"{mailbox}{separator}{FOLDERS[result.outcome].lstrip('.')}"
        if folder not in created:
            client.create(_quote(folder))  # NO when it exists: fine
            created.add(folder)
        if can_move:
            _ok(client.uid("MOVE", uid, _quote(folder)))
        else:
            _ok(client.uid("COPY", uid, _quote(folder)))
            _ok(client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)"))
        results.append(replace(result, path=Path(folder)))
    if not can_move and uids:  # only the ones copied: others marked \Deleted stay
        if "UIDPLUS" in client.capabilities:
            _ok(client.uid("EXPUNGE", b",".join(uids).decode()))
        else:
            _ok(client.expunge())
    return results


def _fetch(client: imaplib.IMAP4, uid: bytes) -> bytes:
    """The message's bytes; a message over MAX_REPORT_BYTES gives too many (set aside unread)."""
    sizes = _ok(client.uid("FETCH", uid, "(RFC822.SIZE)"))
    found = re.search(rb"RFC822\.SIZE (\d+)", sizes[0] if isinstance(sizes[0], bytes) else b"")
    if found and int(found.group(1)) > MAX_REPORT_BYTES:
        return b"x" * (MAX_REPORT_BYTES + 1)
    data = _ok(client.uid("FETCH", uid, "(BODY.PEEK[])"))
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return item[1]
    return b""


def _separator(client: imaplib.IMAP4) -> str:
    listing = _ok(client.list('""', '""'))
    found = re.match(rb'\([^)]*\) "(.)"', listing[0] or b"")
    return found.group(1).decode() if found else "."


def _ok(answer: tuple[str, list]) -> list:
    status, data = answer
    if status != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise imaplib.IMAP4.error(f"{status} {text}")
    return data


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _unreadable(detail: str) -> BounceResult:
    return BounceResult(BounceOutcome.UNREADABLE, detail=detail)
