"""A throwaway PostgreSQL 15 cluster for the multi-worker tests.

Debian's server binaries are on the machine (/usr/lib/postgresql/15/bin) but no
server runs: this starts one in a temp directory on a free loopback port, as
the `postgres` user when the tests run as root (initdb refuses root), with
fsync off (the data is thrown away), and stops it at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from newsletter.capture import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yields an admin URL (`postgresql+psycopg://newsletter@127.0.0.1:PORT/postgres`)."""
    if not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries are not installed (postgresql-15)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    run = [*as_user]
    try:
        subprocess.run(
            [*run, str(BIN / "initdb"), "-D", str(data), "-U", "newsletter", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        options = f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c max_connections=200"
        subprocess.run(
            [*run, str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60",
             "-l", str(root / "server.log"), "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql+psycopg://newsletter@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run, str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_url: str, name: str, *, template: str | None = None) -> str:
    """A fresh database on the cluster, empty or a copy of `template`; its URL.

    A copy is how a test gets a database `newsletter init` made without running
    the migrations again (the template has no connections once it is made).
    """
    import psycopg

    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, name: str) -> None:
    """Drop a test's database, ending the connections its engines still hold."""
    import psycopg

    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
