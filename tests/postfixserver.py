"""A private Postfix on loopback, started by the tests themselves (Debian's `postfix` package).

    with postfix_server() as relay:          # smtpd on 127.0.0.1:relay.port
        ...                                  # relay.log() is its maillog

    with smtp_sink("-f", "RCPT") as port, virtual_maildir("news.test") as (params, maildir):
        with postfix_server(transport_maps=f"inline:{{example.net=smtp:[127.0.0.1]:{port}}}",
                            **params) as relay:
            ...   # mail to example.net is refused by the sink after Postfix queued it;
                  # Postfix's own DSN to the (VERP) sender @news.test lands in `maildir`

Its own configuration directory in a temp dir (main.cf, master.cf, the queue and
data directories, the maillog), never the system's: `inet_interfaces =
127.0.0.1`, the `smtp inet` service moved to `127.0.0.1:PORT`, nothing chrooted,
no aliases, and everything it accepts discarded unless `main_cf` says otherwise
(e.g. `relayhost="[127.0.0.1]:2525"` hands mail on to a test's own server).
`main_cf` sets any main.cf parameter (`message_size_limit`, `smtpd_tls_*`, …).

Postfix's master must run as root; without root or without the package the
fixture skips and says why. As root, `postfix -c DIR` accepts a directory that
/etc/postfix/main.cf does not list in `alternate_config_directories`. A start
that fails (a silent exit 1) raises with the maillog's last lines.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from newsletter.capture import free_port

POSTFIX = "/usr/sbin/postfix"
SMTP_SINK = "/usr/sbin/smtp-sink"
MASTER_CF = Path("/etc/postfix/master.cf")
START_SECONDS = 30.0


@dataclass(frozen=True)
class PostfixServer:
    host: str
    port: int
    directory: Path  # its config directory: main.cf, master.cf, queue/, data/, maillog

    @property
    def maillog(self) -> Path:
        return self.directory / "maillog"

    def log(self) -> str:
        try:
            return self.maillog.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def skip_unless_available() -> None:
    if not Path(POSTFIX).is_file() or not MASTER_CF.is_file():
        pytest.skip("postfix is not installed (Debian: scripts/install-system-deps.sh)")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix needs root (its master daemon runs as root)")


@contextmanager
def postfix_server(*, hostname: str = "relay.test", **main_cf: str) -> Iterator[PostfixServer]:
    """Start a private Postfix smtpd on 127.0.0.1 and a free port; stop it and remove its
    directory afterwards."""
    skip_unless_available()
    # Postfix's own processes (user postfix) must reach the directory: not pytest's 0700 tmp.
    directory = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
    directory.chmod(0o755)
    port = free_port()
    server = PostfixServer("127.0.0.1", port, directory)
    try:
        _write_config(directory, port, hostname, main_cf)
        _postfix(directory, "start", server)
        try:
            _wait_listening(server)
            yield server
        finally:
            _postfix(directory, "stop", server, check=False)
            _wait_stopped(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write_config(directory: Path, port: int, hostname: str, extra: dict[str, str]) -> None:
    queue, data = directory / "queue", directory / "data"
    queue.mkdir()
    data.mkdir()
    shutil.chown(data, user="postfix")  # the master's lock file is written as mail_owner
    params = {
        "compatibility_level": "3.6",
        "queue_directory": str(queue),
        "data_directory": str(data),
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "maillog_file": str(directory / "maillog"),
        "maillog_file_prefixes": str(directory),
        "myhostname": hostname,
        "mydestination": "",
        "mynetworks": "127.0.0.0/8",
        "relayhost": "",
        "alias_maps": "",
        "alias_database": "",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "default_transport": "discard",
        "local_transport": "discard",
        "biff": "no",
    }
    params.update(extra)
    (directory / "main.cf").write_text(
        "".join(f"{key} = {value}\n" for key, value in params.items()), encoding="utf-8"
    )
    (directory / "master.cf").write_text(_master_cf(port), encoding="utf-8")


def _master_cf(port: int) -> str:
    """Debian's master.cf with the smtp listener on 127.0.0.1:PORT and nothing chrooted
    (a chroot would need copies of /etc files inside the queue directory)."""
    lines: list[str] = []
    for line in MASTER_CF.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if line[:1] in ("", "#", " ", "\t") or len(fields) < 8:
            lines.append(line)
            continue
        service, kind = fields[0], fields[1]
        if service == "smtp" and kind == "inet":
            fields[0] = f"127.0.0.1:{port}"
        elif kind == "inet":  # every other listener (submission, …) stays off
            lines.append("#" + line)
            continue
        fields[4] = "n"  # chroot
        lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"


def _postfix(directory: Path, command: str, server: PostfixServer, *, check: bool = True) -> None:
    result = subprocess.run(
        [POSTFIX, "-c", str(directory), command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check and result.returncode != 0:
        tail = "\n".join(server.log().splitlines()[-15:])
        raise RuntimeError(
            f"postfix {command} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
        )


def _wait_listening(server: PostfixServer) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            with socket.create_connection((server.host, server.port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                tail = "\n".join(server.log().splitlines()[-15:])
                raise RuntimeError(f"postfix did not listen on {server.port}:\n{tail}") from None
            time.sleep(0.05)


def _wait_stopped(directory: Path) -> None:
    """Until the master's pid file names no live process (bounded), so removal is safe."""
    pid_file = directory / "queue" / "pid" / "master.pid"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
            return
        time.sleep(0.05)


@contextmanager
def smtp_sink(*options: str) -> Iterator[int]:
    """Postfix's `smtp-sink` on 127.0.0.1 and a free port, with `options` (e.g. `-f RCPT`:
    every recipient refused with a 5xx, `-B` to choose the reply); yields the port."""
    if not Path(SMTP_SINK).is_file():
        pytest.skip("smtp-sink is not installed (Debian: postfix)")
    port = free_port()
    drop = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
    process = subprocess.Popen(
        [SMTP_SINK, *options, *drop, f"127.0.0.1:{port}", "10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                    raise RuntimeError(f"smtp-sink did not listen on {port}: {error}") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


@contextmanager
def virtual_maildir(domain: str) -> Iterator[tuple[dict[str, str], Path]]:
    """main.cf parameters that deliver all mail for `domain` (any local part: a VERP
    address too) to one Maildir with virtual(8) and `static:` maps, and that Maildir."""
    base = Path(tempfile.mkdtemp(prefix="newsletter-mailboxes-"))
    base.chmod(0o755)
    try:
        if os.geteuid() == 0:
            shutil.chown(base, user="nobody", group="nogroup")
        uid, gid = base.stat().st_uid, base.stat().st_gid
        params = {
            "virtual_mailbox_domains": domain,
            "virtual_mailbox_base": str(base),
            "virtual_mailbox_maps": "static:mailbox/",  # the trailing slash: a Maildir
            "virtual_uid_maps": f"static:{uid}",
            "virtual_gid_maps": f"static:{gid}",
            "virtual_minimum_uid": str(min(uid, 100)),
            "virtual_transport": "virtual",
        }
        yield params, base / "mailbox"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def wait_for_messages(maildir: Path, count: int = 1, seconds: float = START_SECONDS) -> list[Path]:
    """The files of maildir/new once there are `count` of them; raises after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {count} messages arrived in {maildir}")
        time.sleep(0.05)
