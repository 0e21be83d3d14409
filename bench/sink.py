"""Postfix's smtp-sink as the benchmark's SMTP server, and smtp-source as the physical limit.

smtp-sink (C, one event-driven process) accepts any number of concurrent
sessions and throws every message away. With `-c` it writes a running counter
(`sess=N quit=N mesg=N`, records separated by CR) each time a message's final
"." arrives or a session ends; its stdout goes to a file, which this module
reads: the number of messages the sink got, and the moment it got the first
one (polled every millisecond).
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
_MESG = re.compile(rb"mesg=(\d+)")


def find_tool(name: str) -> str | None:
    """The path of smtp-sink / smtp-source (in /usr/sbin, often not on a user's PATH)."""
    path = f"/usr/sbin/{name}"
    return path if os.access(path, os.X_OK) else shutil.which(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@dataclass
class Usage:
    """What the kernel says a finished child used (os.wait4)."""

    wall: float
    cpu: float  # user + sys seconds
    user: float
    sys: float
    maxrss_kb: int
    returncode: int


def wait_usage(process: subprocess.Popen, started: float) -> Usage:
    """Reap `process` with wait4 (its own rusage, not the sum of all children)."""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Usage(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        user=usage.ru_utime,
        sys=usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
        returncode=process.returncode,
    )


class Sink:
    """One smtp-sink process on a free port of 127.0.0.1; a fresh one per measured run."""

    def __init__(self, workdir: Path, backlog: int = 1000) -> None:
        self.log = workdir / f"sink-{time.monotonic_ns()}.log"
        command = [find_tool("smtp-sink") or SMTP_SINK, "-c"]
        if os.geteuid() == 0:  # smtp-sink refuses to run as root without dropping privileges
            command += ["-u", getpass.getuser()]
        for _ in range(5):
            self.port = free_port()
            self._out = self.log.open("wb")
            self.process = subprocess.Popen(
                [*command, f"127.0.0.1:{self.port}", str(backlog)],
                stdout=self._out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                wait_listening(self.port, timeout=5)
                return
            except OSError:
                self.process.kill()
                self.process.wait()
                self._out.close()
        raise RuntimeError(f"smtp-sink did not start; see {self.log}")

    def messages(self) -> int:
        """Messages received so far (the last `mesg=` of the counter)."""
        data = self.log.read_bytes()
        found = _MESG.findall(data[-200:]) or _MESG.findall(data)
        return int(found[-1]) if found else 0

    def watch_first_message(self) -> FirstMessage:
        """Start polling for the first message; read `.at` (time.time()) once it came."""
        return FirstMessage(self)

    def stop(self) -> float:
        """Stop the sink; the CPU seconds it used."""
        self.process.terminate()
        _, _, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = 0
        self._out.close()
        return usage.ru_utime + usage.ru_stime


class FirstMessage:
    """A thread that polls the sink's counter file until `mesg=` first appears."""

    def __init__(self, sink: Sink, interval: float = 0.001, timeout: float = 600) -> None:
        self.sink = sink
        self.at: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval, timeout), daemon=True)
        self._thread.start()

    def _poll(self, interval: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.sink.log.open("rb") as log:
            seen = b""
            while not self._done.is_set() and time.monotonic() < deadline:
                seen += log.read()
                if b"mesg=" in seen and _MESG.search(seen) and int(_MESG.findall(seen)[-1]) > 0:
                    self.at = time.time()
                    return
                time.sleep(interval)

    def stop(self) -> float | None:
        self._done.set()
        self._thread.join()
        return self.at


def run_source(
    port: int, *, sessions: int, messages: int, message_file: Path | None, size: int
) -> Usage:
    """smtp-source: `messages` over `sessions` reused sessions (-d) into 127.0.0.1:port."""
    command = [find_tool("smtp-source") or SMTP_SOURCE, "-d", "-s", str(sessions)]
    command += ["-m", str(messages), "-f", "newsletter@example.com", "-t", "reader@example.com"]
    command += ["-F", str(message_file)] if message_file else ["-l", str(size)]
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, f"127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    usage = wait_usage(process, started)
    if usage.returncode != 0:
        error = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise RuntimeError(f"smtp-source failed ({usage.returncode}): {error.strip()}")
    return usage
