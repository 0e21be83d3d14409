"""A private Dovecot IMAP server on loopback, started by the tests (Debian's `dovecot-imapd`).

    with dovecot_server() as imap:      # imap://bounces:secret@127.0.0.1:imap.port/INBOX
        ...                             # imap.url(); imap.log() is its log

Its whole configuration in a temp dir, never /etc/dovecot: one passwd-file user,
mail in Maildirs under the temp dir, `listen = 127.0.0.1` on a free port, plain
IMAP only (no TLS, plain logins allowed: loopback), its own base_dir and
state_dir. Run in the foreground (`dovecot -F`) and stopped with SIGTERM.
Dovecot's master runs as root here (it switches to the mail user per
session); without root or without the package the fixture skips and says why.
"""

from __future__ import annotations

import imaplib
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

DOVECOT = "/usr/sbin/dovecot"
IMAP = "/usr/lib/dovecot/imap"
START_SECONDS = 30.0
USER, PASSWORD = "bounces", "imap-test-password"


@dataclass(frozen=True)
class DovecotServer:
    host: str
    port: int
    directory: Path

    def url(self, mailbox: str = "INBOX", *, password: str = PASSWORD) -> str:
        return f"imap://{USER}:{password}@{self.host}:{self.port}/{mailbox}"

    def log(self) -> str:
        try:
            return (self.directory / "dovecot.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in IMAP client, for a test to put messages in and look at folders."""
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            client.login(USER, PASSWORD)
            yield client
        finally:
            client.logout()


@contextmanager
def dovecot_server() -> Iterator[DovecotServer]:
    if not Path(DOVECOT).is_file() or not Path(IMAP).is_file():
        pytest.skip("dovecot is not installed (Debian: scripts/install-system-deps.sh)")
    if os.geteuid() != 0:
        pytest.skip("a private Dovecot needs root here (its master switches users)")
    directory = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    directory.chmod(0o755)
    port = free_port()
    process = None
    try:
        conf = _write_config(directory, port)
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        server = DovecotServer("127.0.0.1", port, directory)
        _wait_listening(server, process)
        yield server
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=START_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stderr:
                process.stderr.close()
        shutil.rmtree(directory, ignore_errors=True)


def _write_config(directory: Path, port: int) -> Path:
    home = directory / "home"
    home.mkdir()
    shutil.chown(home, user="nobody", group="nogroup")
    (directory / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n", encoding="utf-8")
    conf = directory / "dovecot.conf"
    conf.write_text(
        f"""\
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
first_valid_uid = 1
namespace inbox {{
  inbox = yes
  separator = .
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {directory}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={home}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""",
        encoding="utf-8",
    )
    return conf


def _wait_listening(server: DovecotServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            with socket.create_connection((server.host, server.port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(
                    f"dovecot did not listen on {server.port}: {error}\n{server.log()[-2000:]}"
                ) from None
            time.sleep(0.05)
