"""Two sections of `make bench`: 1,000,000 subscribers, and two sender processes on PostgreSQL.

`run_million`: the import of a 1M-row CSV (and of a tenth of it, to show the time
stays linear in N) as `newsletter subscribers import` in a subprocess; the time to
queue (the one INSERT … SELECT that gives every active subscriber a deliveries row,
timed by calling `store.deliveries.queue_deliveries` on a copy); and a send into
smtp-sink stopped after a fixed time (a full 1M send is ~20 minutes at loopback
rates; `--million-full` runs it), with VmRSS sampled over the send so flat memory
is seen, not assumed.

`run_pg_workers`: a throwaway PostgreSQL 15 cluster (bench/pg.py), the list
imported once into a template database, then `newsletter send --workers 1` and
`--workers 2`, each into its own smtp-sink from its own copy: rate, our CPU and
the server's, and every message delivered once (the sink's count against the
`sent` rows and N).

Both write plain dicts into `Results` (bench/model.py), so `--from-json` renders them.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, func, select

from bench import pg
from bench.model import Plan, Results
from bench.sink import FirstMessage, Sink, wait_usage
from newsletter.store.deliveries import queue_deliveries
from newsletter.store.engine import open_engine
from newsletter.store.migrate import upgrade
from newsletter.store.schema import deliveries, editions

if TYPE_CHECKING:
    from bench.run import Workspace

RSS_POINTS = 12  # samples shown per send (of the ones taken every 0.2 s)


def _run():  # noqa: ANN202 (bench.run imports this module: import it late)
    from bench import run

    return run


# ── 1,000,000 subscribers ─────────────────────────────────────────────────────


def run_million(plan: Plan, space: Workspace, results: Results) -> None:
    """Import at N/10 and N, the time to queue N, and a send to N stopped after a while."""
    run = _run()
    n = plan.million
    out: dict = {"n": n, "imports": [], "full": plan.million_full}
    db = space.root / "million.db"
    for size in (n // 10, n) if n >= 100_000 else (n,):  # the quick run: one small import
        path = space.root / f"subscribers-million-{size}.csv"
        run.write_subscribers(path, size)
        target = space.root / f"million-import-{size}.db"
        run.copy_db(space.root / "base.db", target)
        measured = _import(space, path, target, size)
        out["imports"].append(measured)
        run.log(
            f"import {size:,}: {measured['wall']:.1f}s, {measured['rows_per_s']:,.0f} rows/s, "
            f"{measured['maxrss_mb']:.0f} MB"
        )
        path.unlink()
        if size == n:
            target.rename(db)
        else:
            target.unlink()
    out["queue"] = _time_to_queue(space, db)
    run.log(f"queue {n:,}: {out['queue']['seconds']:.1f}s")
    seconds = None if plan.million_full else plan.million_send_seconds
    out["send"] = _send(space, db, n, url=None, workers=1, stop_after=seconds)
    run.log(
        f"send {n:,}{' (full)' if seconds is None else f' stopped after {seconds:.0f}s'}: "
        f"{out['send']['sent']:,} sent, {out['send']['maxrss_mb']:.0f} MB"
    )
    db.unlink()
    results.million = out


def _import(space: Workspace, csv_path: Path, db: Path, n: int) -> dict:
    """`newsletter subscribers import` of `csv_path` into `db`: wall, CPU, peak RSS, its summary."""
    run = _run()
    said = space.root / f"import-{n}.txt"
    with said.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            [str(run.NEWSLETTER), "subscribers", "import", str(csv_path)],
            env=space.env(db, 25, 1),
            cwd=space.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        usage = wait_usage(process, started)
    text = said.read_text(errors="replace").strip()
    if usage.returncode != 0:
        raise RuntimeError(f"import of {n:,} failed: {text[-2000:]}")
    return {
        "n": n,
        "wall": usage.wall,
        "cpu": usage.cpu,
        "rows_per_s": n / usage.wall,
        "maxrss_mb": usage.maxrss_kb / 1024,
        "summary": text.splitlines()[-1].split(": ", 1)[-1] if text else "",
    }


def _time_to_queue(space: Workspace, db: Path) -> dict:
    """`queue_deliveries` on a copy of the imported database: the send's first step at N."""
    run = _run()
    copy = space.root / "million-queue.db"
    run.copy_db(db, copy)
    engine = open_engine(f"sqlite:///{copy}")
    try:
        with engine.connect() as conn:
            edition_id = conn.execute(select(func.max(editions.c.id))).scalar_one()
        started = time.monotonic()
        queued = queue_deliveries(engine, edition_id)
        seconds = time.monotonic() - started
        again_started = time.monotonic()
        again = queue_deliveries(engine, edition_id)  # a rerun: nothing new to queue
        again_seconds = time.monotonic() - again_started
    finally:
        engine.dispose()
        copy.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return {
        "queued": queued,
        "seconds": seconds,
        "rows_per_s": queued / seconds if seconds else None,
        "rerun_queued": again,
        "rerun_seconds": again_seconds,
    }


def _send(
    space: Workspace,
    db: Path | None,
    n: int,
    *,
    url: str | None,
    workers: int,
    stop_after: float | None,
    concurrency: int = 20,
) -> dict:
    """One `newsletter send` into a fresh smtp-sink: figures, RSS samples, sent rows.

    `db` (SQLite, copied first) or `url` (a PostgreSQL database of its own) holds
    the list; the copy is the run's, so the source stays unsent for the next run.
    """
    run = _run()
    rundir = space.root / f"send-{workers}w-{time.monotonic_ns()}"
    rundir.mkdir()
    if db is not None:
        copy = rundir / "newsletter.db"
        run.copy_db(db, copy)
        env = space.env(copy, 25, concurrency)
        database_url = f"sqlite:///{copy}"
    else:
        assert url is not None
        env, database_url = space.env(rundir / "unused.db", 25, concurrency), url
    sink = Sink(rundir)
    try:
        env |= {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SMTP_PORT": str(sink.port)}
        command = [str(run.NEWSLETTER), "send", "--date", run.DAY.isoformat()]
        command += ["--workers", str(workers)] if workers > 1 else []
        watcher = sink.watch_first_message()
        with (rundir / "out.txt").open("wb") as out:
            started_wall, started = time.time(), time.monotonic()
            process = subprocess.Popen(
                command, env=env, cwd=rundir, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            sampler = run.RssSampler(process.pid)
            stopper = None
            if stop_after is not None:
                stopper = _Stopper(process, watcher, stop_after)
            usage = wait_usage(process, started)
            if stopper is not None:
                stopper.cancel()
            samples = sampler.stop()
        first_at = watcher.stop()
        text = (rundir / "out.txt").read_text(errors="replace")[-2000:]
        # A send that finished just as the stop signal came may die of it on its way out.
        raced = usage.returncode == -signal.SIGTERM and f"sent {n}, " in text
        if usage.returncode != 0 and not raced:
            raise RuntimeError(f"newsletter send exited {usage.returncode}: {text}")
        sink_messages = sink.messages()
    finally:
        sink_cpu = sink.stop()
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            sent = conn.execute(
                select(func.count()).where(deliveries.c.status == "sent")
            ).scalar_one()
            rows = conn.execute(select(func.count()).select_from(deliveries)).scalar_one()
    finally:
        engine.dispose()
    if db is not None:
        copy.unlink()
    first = first_at - started_wall if first_at else None
    sending = usage.wall - first if first is not None else None
    step = max(1, len(samples) // RSS_POINTS)
    return {
        "n": n,
        "workers": workers,
        "concurrency": concurrency,
        "stopped_after": stop_after,
        "sent": sent,
        "rows": rows,
        "sink_messages": sink_messages,
        "wall": usage.wall,
        "cpu": usage.cpu,
        "maxrss_mb": usage.maxrss_kb / 1024,
        "first_message": first,
        "rate": sent / usage.wall if usage.wall else None,
        "sending_rate": sent / sending if sending else None,
        "sink_cpu": sink_cpu,
        "rss": [(round(t, 1), round(kb / 1024, 1)) for t, kb in samples[::step]]
        + ([(round(samples[-1][0], 1), round(samples[-1][1] / 1024, 1))] if samples else []),
    }


class _Stopper:
    """SIGTERM `process` `seconds` after the sink's first message (not after its start: a
    start-up slowed by a busy machine must not eat the send, nor come before its handler)."""

    def __init__(self, process: subprocess.Popen, watcher: FirstMessage, seconds: float) -> None:
        self._cancelled = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(process, watcher, seconds), daemon=True
        )
        self._thread.start()

    def _run(self, process: subprocess.Popen, watcher: FirstMessage, seconds: float) -> None:
        deadline = time.monotonic() + 600  # no first message in 10 minutes: stop anyway
        while watcher.at is None and time.monotonic() < deadline:
            if self._cancelled.wait(0.05):
                return
        if not self._cancelled.wait(seconds) and process.returncode is None:
            process.send_signal(signal.SIGTERM)

    def cancel(self) -> None:
        self._cancelled.set()
        self._thread.join(timeout=5)


# ── two sender processes on PostgreSQL ────────────────────────────────────────


def run_pg_workers(plan: Plan, space: Workspace, results: Results) -> None:
    """`--workers 1` and `--workers 2` to the same list on a throwaway PostgreSQL 15."""
    run = _run()
    n = plan.pg_workers_n
    if not pg.available():
        results.pg_workers = {"n": n, "skipped": f"no PostgreSQL 15 server in {pg.BIN}"}
        run.log("two senders on PostgreSQL: skipped (postgresql-15 not installed)")
        return
    out: dict = {"n": n, "runs": []}
    cluster = pg.Cluster()
    try:
        template = cluster.create_database("bench_template")
        upgrade(template)
        env = space.env(space.root / "unused.db", 25, 1) | {"NEWSLETTER_DATABASE_URL": template}
        sink = Sink(space.root)
        try:  # store the edition (rendered once), as prepare() does for SQLite
            env["NEWSLETTER_SMTP_PORT"] = str(sink.port)
            run.run_cli(
                ["send", "--date", run.DAY.isoformat(), "--to", "editor@example.com"],
                env,
                space.root,
            )
        finally:
            sink.stop()
        csv_path = space.root / f"subscribers-pg-{n}.csv"
        run.write_subscribers(csv_path, n)
        started = time.monotonic()
        run.run_cli(["subscribers", "import", str(csv_path)], env, space.root)
        out["import_seconds"] = time.monotonic() - started
        run.log(f"PostgreSQL: {n:,} imported in {out['import_seconds']:.1f}s")
        for workers in (1, 2):
            url = cluster.create_database(f"bench_w{workers}", template="bench_template")
            server_before = cluster.cpu_seconds()
            measured = _send(space, None, n, url=url, workers=workers, stop_after=None)
            measured["server_cpu"] = cluster.cpu_seconds() - server_before
            out["runs"].append(measured)
            run.log(
                f"PostgreSQL --workers {workers}: {measured['rate']:,.0f} msg/s, "
                f"{measured['sent']:,} sent, sink {measured['sink_messages']:,}"
            )
    finally:
        cluster.stop()
    results.pg_workers = out
