"""A throwaway PostgreSQL 15 cluster for the benchmark's two-sender section.

The same recipe as tests/pgserver.py (Debian's server binaries, a temp directory,
a free loopback port, fsync off, run as `postgres` when we are root), without
pytest, and with what the benchmark reads: the server's CPU seconds (the
postmaster's own plus those of every backend it reaped), so a send's cost on the
database side can be stated beside the sender's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.sink import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> bool:
    """Whether the PostgreSQL 15 server binaries are installed (Debian's postgresql-15)."""
    return (BIN / "initdb").exists() and (BIN / "pg_ctl").exists()


class Cluster:
    """One cluster, started on creation; `stop()` ends it and removes its files."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="newsletter-bench-pg-"))
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            self._as = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres", "postgres")
        self.data, self.port = self.root / "data", free_port()
        try:
            subprocess.run(
                [*self._as, str(BIN / "initdb"), "-D", str(self.data), "-U", "newsletter",
                 "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            options = (
                f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off "
                "-c max_connections=200 -c shared_buffers=128MB"
            )
            subprocess.run(
                [*self._as, str(BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                 "-t", "60", "-l", str(self.root / "server.log"), "start"],
                check=True, capture_output=True, timeout=90,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql+psycopg://newsletter@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A fresh database, empty or a copy of `template` (which must have no sessions)."""
        import psycopg

        dsn = self.url.replace("postgresql+psycopg://", "postgresql://")
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def cpu_seconds(self) -> float:
        """The server's CPU so far: the postmaster's user+sys plus its reaped children's."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return 0.0
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [*self._as, str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)
