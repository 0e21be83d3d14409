"""A private DNS server on loopback (Debian's dnsmasq), started by the tests themselves.

    records = [txt("example.net", "v=spf1 -all"), mx("example.net", "mx.example.net")]
    with dns_server(records, zones=["net"]) as server:
        server.address                      # "127.0.0.1:PORT": NEWSLETTER_DNS_RESOLVER

dnsmasq answers from its configuration alone (`--no-resolv --no-hosts`, nothing
forwarded): the names in `zones` are its own (`local=/net/`), so a name there that
it was not given is NXDOMAIN and a type it lacks is an empty answer; a name outside
them is REFUSED. It listens on 127.0.0.1 and a free port (UDP and TCP), runs from a
temp dir and is stopped afterwards. Without the package the fixture skips.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

DNSMASQ = "/usr/sbin/dnsmasq"
START_SECONDS = 10.0


@dataclass(frozen=True)
class DnsServer:
    port: int
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def txt(name: str, text: str) -> str:
    """A TXT record, split into 255-byte character-strings as DNS requires of long ones."""
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    if any('"' in chunk for chunk in chunks):
        raise ValueError("dnsmasq's configuration cannot quote a double quote")
    return f"txt-record={name}," + ",".join(f'"{chunk}"' for chunk in chunks)


def mx(name: str, host: str, preference: int = 10) -> str:
    return f"mx-host={name},{host},{preference}"


def free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for both UDP and TCP")


@contextmanager
def dns_server(records: Iterable[str], *, zones: Iterable[str]) -> Iterator[DnsServer]:
    if not Path(DNSMASQ).is_file():
        pytest.skip("dnsmasq is not installed (Debian: scripts/install-system-deps.sh)")
    directory = Path(tempfile.mkdtemp(prefix="newsletter-dns-"))
    config = directory / "dnsmasq.conf"
    lines = [*records, *(f"local=/{zone}/" for zone in zones)]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    port = free_udp_and_tcp_port()
    log = (directory / "dnsmasq.log").open("wb")
    process = subprocess.Popen(
        [
            DNSMASQ,
            "--keep-in-foreground",
            f"--port={port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            f"--pid-file={directory / 'dnsmasq.pid'}",
            f"--conf-file={config}",
            "--log-facility=-",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = DnsServer(port, directory)
    try:
        _wait_answering(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def _wait_answering(server: DnsServer, process: subprocess.Popen[bytes]) -> None:
    """Until dnsmasq answers a question (any answer, NXDOMAIN included), or it exits."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port
    resolver.lifetime = 0.5
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            output = (server.directory / "dnsmasq.log").read_text(errors="replace")
            raise RuntimeError(f"dnsmasq exited {process.returncode}: {output[-2000:]}")
        try:
            resolver.resolve("ready.check.", "TXT")
            return
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return  # it answered
        except dns.exception.Timeout:
            if time.monotonic() > deadline:
                raise RuntimeError("dnsmasq did not answer within its start time") from None
