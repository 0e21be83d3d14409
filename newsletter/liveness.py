"""Who this process is, and whether another one is still alive.

Claims on deliveries and the scheduler lock name their holder as
`host:pid:nonce`. A holder on this host whose pid no longer exists is dead for
sure, so its claims can be taken back at once instead of waiting for a lease
to expire; a holder on another host is judged by its lease or heartbeat.
"""

from __future__ import annotations

import os
import secrets
import socket


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def is_dead(holder: str) -> bool:
    """True only when certain: the holder ran on this host and its process is gone."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
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
