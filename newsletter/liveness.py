"""Who this process is, and whether another one is still alive.

Claims on deliveries and the scheduler lock name their holder as
`host:pid:nonce`. A holder on this host whose pid no longer exists is dead for
sure, so its claims can be taken back at once instead of waiting for a lease
to expire; a holder on another host is judged by its lease or heartbeat.

One process may run many sends one after another (the server's "send now",
the scheduler's daily job), so each send holds its claims as a run of its own
(`run_holder`, nonce `run-…`): once that run has ended, its holder is dead
too, and the next send in the same process takes back what the ended one
could not give back, instead of waiting out the lease of a process that is
still alive.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_RUN = "run-"  # the nonce of a run holder starts with this
_running: set[str] = set()  # this process's run holders whose run has not ended
_running_lock = threading.Lock()  # sends run in threads of their own


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@contextmanager
def run_holder() -> Iterator[str]:
    """A holder for one run (a send) of this process, alive until the block ends."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{_RUN}{secrets.token_hex(4)}"
    with _running_lock:
        _running.add(holder)
    try:
        yield holder
    finally:
        with _running_lock:
            _running.discard(holder)


def is_dead(holder: str) -> bool:
    """True only when certain: the holder ran on this host and its process is gone, or it
    was a run of this process (`run_holder`) that has ended."""
    host, _, rest = holder.partition(":")
    pid_text, _, nonce = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        if not nonce.startswith(_RUN):
            return False
        with _running_lock:
            return holder not in _running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped still has a pid; on Linux its state says it is dead."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False
