"""`make bench`: how fast `newsletter send` delivers, against what, and at what cost.

One run measures, on this machine:

1. our send, end to end: `newsletter send` as a subprocess (a fresh SQLite
   copy per run, subscribers imported and the edition stored beforehand) into
   Postfix's `smtp-sink` at CONCURRENCY 1, 10 and 20: msg/s, CPU seconds per
   1,000 messages, peak RSS, time to first message;
2. the physical limit: `smtp-source` sending the same message (our sample.eml)
   over the same number of reused sessions into the same kind of sink;
3. a hand-written `smtplib` loop (bench/handwritten.py) over one connection;
4. our send through a slow relay (bench/slowrelay.py, +25 ms per reply) against
   the bound CONCURRENCY / (round trips per message x 25 ms), with ESMTP
   PIPELINING on (the default) and off; the relay counts the round trips;
5. peak RSS at 10k, 100k and 300k subscribers;
6. a cProfile of one send: our functions by cumulative time, the top functions.

    python -m bench.run                  # the full run (BENCHMARKS.md), ~9 minutes
    python -m bench.run --quick          # small N, 1 run: proves it works (< 1 min)
    python -m bench.run --budget 900     # more of the 100k/300k matrix (see below)
    python -m bench.run --from-json var/bench/full.json   # re-render, measure nothing

It prints the report and writes it to --output (BENCHMARKS.md by default; the
raw figures go to var/bench/<plan>.json). Timings are never asserted. The full
run always does its core runs, then adds the rest of the brief's matrix while
the time predicted from the rates measured so far fits --budget (560 s).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import os
import platform
import pstats
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench import dkim_speed
from bench.articles import write_day
from bench.million import run_million, run_pg_workers
from bench.model import (
    DELAY,
    FULL,
    QUICK,
    HandRun,
    OursRun,
    Plan,
    Results,
    SourceRun,
    grouped,
    label,
    load,
    median,
    save,
)
from bench.report import report, report_only
from bench.sink import Sink, find_tool, run_source, wait_usage
from newsletter.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
NEWSLETTER = PYTHON.parent / "newsletter"
DAY = dt.date(2026, 11, 26)


def plan_sizes(plan: Plan) -> list[int]:
    sizes = {n for n, _, _ in plan.ours} | {n for n, _ in plan.memory_capped}
    sizes.add(plan.profile_n)
    sizes |= {plan.slow_per_connection * c for c in (1, 10, 20)}
    return sorted(sizes)


# ── small helpers ─────────────────────────────────────────────────────────────


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "120", "PYTHONUNBUFFERED": "1"})
    return env


def newsletter_env(db: Path, articles: Path, port: int, concurrency: int) -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{db}",
            "NEWSLETTER_ARTICLES_SOURCE": str(articles),
            "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates"),
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(port),
            "NEWSLETTER_SMTP_SECURITY": "none",
            "NEWSLETTER_CONCURRENCY": str(concurrency),
            "NEWSLETTER_RATE_LIMIT": "0",
            "NEWSLETTER_LOG_LEVEL": "WARNING",
            "NEWSLETTER_FROM_ADDRESS": "newsletter@example.com",
            "NEWSLETTER_BASE_URL": "https://news.example.com",
            "NEWSLETTER_SECRET_KEY": "benchmark-secret-key-not-for-production-use-0123456789",
            "NEWSLETTER_TIMEZONE": "UTC",
        }
    )
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [str(NEWSLETTER), *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"newsletter {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


FIRST = ("Ann", "José", "Zoë", "Mohammed", "Wei", "Olga", "Siobhán", "Kwame", "Priya", "Lars")
FIRST += ("Élodie", "Hiroshi", "Fatima", "Björn", "Chloé", "Tomás", "Aiko", "Nnamdi", "Eva", "Raj")
LAST = ("Martin", "García", "Müller", "Nguyen", "Okafor", "Kowalczyk", "Smith", "Søndergaard")
LAST += ("Rossi", "Yılmaz", "Dubois", "Tanaka", "O'Brien", "Haddad", "Silva", "Lindqvist")


def write_subscribers(path: Path, count: int) -> None:
    """`email,name` rows: realistic names (a fifth non-ASCII), one in ten without a name."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name"])
        for i in range(count):
            first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
            local = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore")
            local = local.decode().lower().replace("'", "")
            domain = ("example.com", "example.org", "example.net")[i % 3]
            name = "" if i % 10 == 9 else f"{first} {last}"
            writer.writerow([f"{local}.{i}@{domain}", name])


def copy_db(source: Path, target: Path) -> None:
    """A fresh copy per run (sqlite's backup API: consistent whatever the journal mode)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def sent_rows(db: Path) -> tuple[int, float | None]:
    """Deliveries recorded as sent, and the time (epoch) of the first one."""
    with sqlite3.connect(db) as conn:
        count, first = conn.execute(
            "SELECT count(*), min(updated_at) FROM deliveries WHERE status = 'sent'"
        ).fetchone()
    conn.close()
    if not first:
        return count, None
    return count, dt.datetime.fromisoformat(first).replace(tzinfo=dt.UTC).timestamp()


class RssSampler:
    """VmRSS of a running process every `interval` seconds, as (seconds since start, KB)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        path = Path(f"/proc/{self.pid}/status")
        while not self._stop.is_set():
            try:
                for line in path.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        kb = int(line.split()[1])
                        self.samples.append((time.monotonic() - self.started, kb))
                        break
            except (OSError, ValueError):
                return
            self._stop.wait(interval)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def rss_at(samples: list[tuple[float, int]], fraction: float) -> int | None:
    if not samples:
        return None
    end = samples[-1][0]
    return min(samples, key=lambda s: abs(s[0] - end * fraction))[1]


# ── the workspace: articles, edition, subscriber lists, template databases ─────


@dataclass
class Workspace:
    root: Path
    articles: Path
    preview: Path
    message_lf: Path  # sample.eml with LF ends, for smtp-source -F (it adds the CRs)
    html_bytes: int
    message_bytes: int
    csvs: dict[int, Path] = field(default_factory=dict)
    dbs: dict[int, Path] = field(default_factory=dict)
    import_seconds: dict[int, float] = field(default_factory=dict)

    def env(self, db: Path, port: int, concurrency: int) -> dict[str, str]:
        return newsletter_env(db, self.articles, port, concurrency)


def prepare(root: Path, sizes: list[int], csv_only: Iterable[int] = ()) -> Workspace:
    articles = root / "articles"
    write_day(articles, DAY)
    preview = root / "preview"
    env = newsletter_env(root / "preview.db", articles, 25, 1)
    upgrade(env["NEWSLETTER_DATABASE_URL"])  # as `newsletter init` makes it
    out = run_cli(["preview", "--date", DAY.isoformat(), "--output", str(preview)], env, root)
    if "warning" in out.lower():
        log(f"preview warnings: {out}")
    sample = (preview / "sample.eml").read_bytes()
    message_lf = root / "message.txt"
    message_lf.write_bytes(sample.replace(b"\r\n", b"\n"))
    space = Workspace(
        root=root,
        articles=articles,
        preview=preview,
        message_lf=message_lf,
        html_bytes=(preview / "edition.html").stat().st_size,
        message_bytes=len(sample),
    )
    log(
        f"edition: 15 articles, edition.html {space.html_bytes / 1024:.1f} KB, "
        f"message {space.message_bytes / 1024:.1f} KB"
    )
    for n in csv_only:
        space.csvs[n] = root / f"subscribers-{n}.csv"
        write_subscribers(space.csvs[n], n)
    # Store the edition (rendered once) now, so the timed send only sends: a test send
    # builds and stores it (recorded apart from subscriber deliveries). Once, in a base
    # database that every list size starts from.
    base = root / "base.db"
    sink = Sink(root)
    try:
        env = space.env(base, sink.port, 1)
        upgrade(env["NEWSLETTER_DATABASE_URL"])
        run_cli(["send", "--date", DAY.isoformat(), "--to", "editor@example.com"], env, root)
    finally:
        sink.stop()
    for n in sizes:
        space.csvs[n] = root / f"subscribers-{n}.csv"
        write_subscribers(space.csvs[n], n)
        db = root / f"template-{n}.db"
        copy_db(base, db)
        started = time.monotonic()
        run_cli(["subscribers", "import", str(space.csvs[n])], space.env(db, 25, 1), root)
        space.import_seconds[n] = time.monotonic() - started
        space.dbs[n] = db
        log(f"{n:,} subscribers imported in {space.import_seconds[n]:.1f}s")
    return space


# ── 1, 4, 5: our send ─────────────────────────────────────────────────────────


def run_ours(
    space: Workspace,
    n: int,
    concurrency: int,
    tag: str,
    *,
    relay: bool = False,
    pipelining: bool = True,
    stop_after: float | None = None,
    profile: Path | None = None,
    dkim: str = "",
) -> OursRun:
    rundir = space.root / f"ours-{tag}-{n}-c{concurrency}-{time.monotonic_ns()}"
    rundir.mkdir()
    db = rundir / "newsletter.db"
    copy_db(space.dbs[n], db)
    sink = Sink(rundir)
    relay_proc, stats_path, port = None, rundir / "relay.json", sink.port
    try:
        if relay:
            relay_proc = subprocess.Popen(
                [str(PYTHON), "-m", "bench.slowrelay", "--upstream", f"127.0.0.1:{sink.port}"]
                + ["--delay", str(DELAY), "--stats", str(stats_path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
                env=base_env(),
            )
            assert relay_proc.stdout is not None
            port = int(relay_proc.stdout.readline().split()[1])
        command = [str(NEWSLETTER), "send", "--date", DAY.isoformat()]
        if profile is not None:
            command = [str(PYTHON), "-m", "cProfile", "-o", str(profile), *command]
        watcher = sink.watch_first_message()
        with (rundir / "stdout.txt").open("wb") as out, (rundir / "stderr.txt").open("wb") as err:
            started_wall, started = time.time(), time.monotonic()
            process = subprocess.Popen(
                command,
                env=space.env(db, port, concurrency)
                | {"NEWSLETTER_SMTP_PIPELINING": "true" if pipelining else "false"}
                | dkim_env(dkim),
                cwd=rundir,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
            sampler = RssSampler(process.pid)
            timer = None
            if stop_after is not None:
                timer = threading.Timer(stop_after, process.send_signal, args=(signal.SIGTERM,))
                timer.start()
            usage = wait_usage(process, started)
            if timer is not None:
                timer.cancel()
            samples = sampler.stop()
        first_at = watcher.stop()
        if usage.returncode != 0:
            raise RuntimeError(
                f"newsletter send exited {usage.returncode}: "
                f"{(rundir / 'stderr.txt').read_text(errors='replace')[-2000:]}"
            )
        relay_stats = None
        if relay_proc is not None:
            relay_proc.send_signal(signal.SIGTERM)
            relay_proc.wait(timeout=30)
            relay_stats = json.loads(stats_path.read_text())
        sink_messages = sink.messages()
    finally:
        if relay_proc is not None and relay_proc.poll() is None:
            relay_proc.kill()
            relay_proc.wait()
        sink_cpu = sink.stop()
    sent, first_row = sent_rows(db)
    db.unlink()  # a 300k-row copy is ~100 MB: keep /tmp small
    if stop_after is None and sent < n:
        said = (rundir / "stdout.txt").read_text(errors="replace").strip().splitlines()
        raise Interrupted(f"sent {sent:,} of {n:,}: {said[-1] if said else 'no output'}")
    return OursRun(
        n=n,
        concurrency=concurrency,
        sent=sent,
        sink_messages=sink_messages,
        wall=usage.wall,
        cpu=usage.cpu,
        maxrss_mb=usage.maxrss_kb / 1024,
        first_message=first_at - started_wall if first_at else None,
        first_sent_row=first_row - started_wall if first_row else None,
        sink_cpu=sink_cpu,
        rss_quarter_mb=(rss_at(samples, 0.25) or 0) / 1024 or None,
        rss_half_mb=(rss_at(samples, 0.5) or 0) / 1024 or None,
        stopped_after=stop_after,
        relay=relay_stats,
        pipelining=pipelining,
        dkim=dkim,
    )


DKIM_KEYS = ROOT / "tests" / "data" / "dkim"  # the test suite's fixed keys


def dkim_env(keys: str) -> dict[str, str]:
    """The settings that make `newsletter send` sign with `keys` ("", "rsa", "rsa+ed25519")."""
    env: dict[str, str] = {}
    if "rsa" in keys.split("+"):
        env |= {
            "NEWSLETTER_DKIM_PRIVATE_KEY": str(DKIM_KEYS / "rsa-2048.pem"),
            "NEWSLETTER_DKIM_SELECTOR": "bench",
        }
    if "ed25519" in keys.split("+"):
        env |= {
            "NEWSLETTER_DKIM_ED25519_KEY": str(DKIM_KEYS / "ed25519.pem"),
            "NEWSLETTER_DKIM_ED25519_SELECTOR": "benched",
        }
    return env


# ── 2: smtp-source ────────────────────────────────────────────────────────────


def run_smtp_source(space: Workspace, n: int, concurrency: int) -> SourceRun:
    sink = Sink(space.root)
    try:
        usage = run_source(
            sink.port, sessions=concurrency, messages=n, message_file=space.message_lf, size=0
        )
        received = sink.messages()
    finally:
        sink.stop()
    return SourceRun(n, concurrency, received, usage.wall, usage.cpu)


# ── 3: the hand-written loop ──────────────────────────────────────────────────


def run_handwritten(space: Workspace, n: int) -> HandRun:
    sink = Sink(space.root)
    try:
        command = [str(PYTHON), "-m", "bench.handwritten", "--port", str(sink.port)]
        command += ["--csv", str(space.csvs[n]), "--articles", str(space.articles)]
        command += ["--date", DAY.isoformat(), "--templates", str(ROOT / "templates")]
        out_path = space.root / f"handwritten-{time.monotonic_ns()}.json"
        with out_path.open("wb") as out:
            started = time.monotonic()
            process = subprocess.Popen(
                command, cwd=ROOT, env=base_env(), stdout=out, stderr=subprocess.DEVNULL
            )
            usage = wait_usage(process, started)
        if usage.returncode != 0:
            raise RuntimeError(f"bench.handwritten exited {usage.returncode}")
        result = json.loads(out_path.read_text())
    finally:
        sink.stop()
    return HandRun(
        n, result["sent"], usage.wall, result["seconds"], usage.cpu, usage.maxrss_kb / 1024
    )


# ── 6: a profile of one send ──────────────────────────────────────────────────


def _short(filename: str) -> str:
    short = filename.replace(str(ROOT) + "/", "")
    if "site-packages/" in short:
        return short.split("site-packages/", 1)[1]
    if "/lib/python3" in short:
        return "stdlib/" + short.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return short


def summarize_profile(path: Path, top: int = 10) -> dict:
    """Where the time goes by our own functions, and the top functions by own time.

    Each `newsletter/` function is charged its cumulative time minus the time of the
    `newsletter/` functions it calls: its own code plus the library code it calls
    (SQLAlchemy, aiosmtplib, the stdlib). Wrappers come to ~0 and nothing is counted
    twice (approximately: a call that passes through a library frame, like an asyncio
    task or a SQLAlchemy event hook, stays with its caller). No names are needed, so it
    keeps working while the send path is rewritten. A built-in (C) function in the
    own-time list is shown with the callers that spent most of its time, since
    `re.Pattern.sub` alone does not say whose regex it is.
    """
    raw = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(tottime for _, _, tottime, _, _ in raw.values())

    def name_of(key: tuple) -> str:
        filename, line, name = key
        return f"{_short(filename)}:{line}({name})" if filename != "~" else name

    rows = []
    for key, (_, ncalls, tottime, cumtime, callers) in raw.items():
        where = name_of(key)
        if key[0] == "~" and callers and tottime > 0:
            spent = sorted(callers.items(), key=lambda item: -item[1][2])[:2]
            where += " from " + ", ".join(
                f"{name_of(caller)} {info[2] / tottime:.0%}" for caller, info in spent
            )
        rows.append((tottime, cumtime, ncalls, where))
    rows.sort(reverse=True)

    # entry points (the command, asyncio.run's wrapper: over half the run) are left out:
    # their nested calls pass through click and asyncio frames, so nothing is subtracted
    ours = [
        key
        for key in raw
        if "/newsletter/" in key[0] and key[2] != "<module>" and raw[key][3] < 0.5 * total
    ]
    nested: dict[tuple, float] = dict.fromkeys(ours, 0.0)
    for callee in ours:
        for caller, (_, _, _, cumtime) in raw[callee][4].items():
            if caller in nested and caller != callee:
                nested[caller] += cumtime
    charged = sorted(
        ((raw[key][3] - nested[key], raw[key][3], raw[key][1], name_of(key)) for key in ours),
        reverse=True,
    )
    startup = sum(
        cumtime
        for (filename, _, name), (_, _, _, cumtime, _) in raw.items()
        if filename.endswith("newsletter/cli/__init__.py") and name == "<module>"
    )
    network = sum(
        tottime
        for (_, _, name), (_, _, tottime, _, _) in raw.items()
        if name == "<method 'poll' of 'select.epoll' objects>"
    )
    return {
        "total": total,
        "top": rows[:top],
        "ours": charged[:12],
        "startup": startup,
        "network": network,
    }


# ── the run ───────────────────────────────────────────────────────────────────


def machine_info() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    ram_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if "MemTotal" in line), 0)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiosmtplib": _version("aiosmtplib"),
        "sqlalchemy": _version("sqlalchemy"),
        "sqlite": sqlite3.sqlite_version,
        "postfix": _postfix_version(),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _postfix_version() -> str:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "postfix"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0 and done.stdout:
            return done.stdout.strip()
    except OSError:
        pass
    return "unknown"


class Interrupted(Exception):
    """A send that stopped before the end without being asked to (see `repeat`)."""


#: Runs that had to be repeated, with the reason, for the report.
INTERRUPTIONS: list[str] = []
#: The 1-minute load average when each run started: how busy the shared machine was.
LOADS: list[float] = []


def repeat(runs: int, what: str, step: Callable[[int], object], attempts: int = 3) -> list:
    """`runs` results of `step`. A send stopped from outside (on this shared machine another
    engineer's test clean-up may SIGTERM a `newsletter send` it did not start) is run again,
    up to `attempts` times, and noted in the report."""
    results = []
    for index in range(runs):
        started = time.monotonic()
        LOADS.append(os.getloadavg()[0])
        for attempt in range(1, attempts + 1):
            try:
                result = step(index)
                break
            except Interrupted as exc:
                INTERRUPTIONS.append(f"{what}, run {index + 1}: {exc}")
                log(f"{what} run {index + 1} interrupted ({exc}); attempt {attempt} of {attempts}")
                if attempt == attempts:
                    raise
        log(
            f"{what} run {index + 1}/{runs}: {describe(result)} ({time.monotonic() - started:.1f}s)"
        )
        results.append(result)
    return results


def describe(result: object) -> str:
    rate = getattr(result, "rate", None)
    text = f"{rate:,.0f} msg/s" if rate is not None else ""
    if isinstance(result, OursRun | HandRun):
        text += f", {result.maxrss_mb:.0f} MB"
    if isinstance(result, OursRun) and result.steady_rate:
        text += f", steady {result.steady_rate:,.1f} msg/s"
    return text


def run_plan(plan: Plan, workdir: Path) -> Results:
    started = time.monotonic()
    results = Results(
        plan=plan.name,
        started=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        machine=machine_info(),
        edition={},
        load_before=os.getloadavg(),
        budget=plan.budget,
        code=code_version(),
    )
    space = prepare(workdir, plan_sizes(plan), csv_only=[plan.handwritten_n])
    results.edition = {"html_bytes": space.html_bytes, "message_bytes": space.message_bytes}
    results.import_seconds = space.import_seconds

    for n, concurrencies, runs in plan.source:
        for c in concurrencies:
            results.source += repeat(
                runs,
                f"smtp-source {label(n)} C={c}",
                lambda _, n=n, c=c: run_smtp_source(space, n, c),
            )
    for n, concurrencies, runs in plan.ours:
        for c in concurrencies:
            results.ours += repeat(
                runs,
                f"our send {label(n)} C={c}",
                lambda i, n=n, c=c: run_ours(space, n, c, f"r{i}"),
            )
    results.hand += repeat(
        plan.runs,
        f"hand-written {label(plan.handwritten_n)}",
        lambda _: run_handwritten(space, plan.handwritten_n),
    )
    for pipelining in (True, False):
        for c in (1, 10, 20):
            n = plan.slow_per_connection * c
            results.slow += repeat(
                plan.runs,
                f"slow relay {n} C={c} pipelining {'on' if pipelining else 'off'}",
                lambda i, n=n, c=c, p=pipelining: run_ours(
                    space, n, c, f"slow{i}", relay=True, pipelining=p
                ),
            )
    n, c, runs = plan.dkim
    for keys in ("rsa", "rsa+ed25519"):
        results.signed += repeat(
            runs,
            f"our send {label(n)} C={c} DKIM {keys}",
            lambda i, n=n, c=c, k=keys: run_ours(space, n, c, f"dkim{i}", dkim=k),
        )
    results.dkim_speed = dkim_speed.micro(plan.dkim_seconds)
    log(f"DKIM micro-measure: {results.dkim_speed}")
    profile_path = workdir / "send.prof"
    results.profile_run = repeat(
        1,
        f"profile {label(plan.profile_n)} C=20",
        lambda _: run_ours(space, plan.profile_n, 20, "profile", profile=profile_path),
    )[0]
    results.profile = summarize_profile(profile_path)
    log(f"profiled a send of {plan.profile_n:,} at C=20")
    run_extras(plan, space, results, started)
    run_million(plan, space, results)
    run_pg_workers(plan, space, results)
    results.interruptions = list(INTERRUPTIONS)
    results.loads = list(LOADS)
    results.load_after = os.getloadavg()
    results.code_after = code_version()
    results.seconds = time.monotonic() - started
    return results


def run_extras(plan: Plan, space: Workspace, results: Results, started: float) -> None:
    """What the brief asks beyond the core runs, in order of value, while it fits the budget.

    In order: the big list at C=20 up to `runs` runs; a full send to the largest list
    (else one stopped after a few seconds, for its memory); the big list at C=10 and
    C=1; smtp-source at the big list's N. Each run's time is predicted from the rates
    just measured (the slowest at that CONCURRENCY, x1.15, plus start-up); what does
    not fit is left out and listed in the report.
    """
    if not plan.budget:
        for n, seconds in plan.memory_capped:
            results.capped += [run_ours(space, n, 20, "capped", stop_after=seconds)]
        return
    big = max(n for n, _, _ in plan.ours)

    def predict(n: int, c: int, runs: list) -> float:
        """Seconds for one run: from the time per message measured at this CONCURRENCY.

        Beyond the largest N measured, the time per message is extrapolated linearly
        in N from the two largest (our send gets slower per message as the list grows);
        otherwise the slowest measured is used. Then x1.15, plus start-up.
        """
        groups = grouped(runs, lambda r: (r.n, r.concurrency))
        per_message = {
            gn: median(r.wall / max(r.n, 1) for r in g) for (gn, gc), g in groups.items() if gc == c
        }
        if not per_message:  # nothing at this concurrency yet: the slowest of any
            per_message = {
                gn: median(r.wall / max(r.n, 1) for r in g) for (gn, _), g in groups.items()
            }
        sizes = sorted(per_message)
        seconds = max(per_message.values())
        if len(sizes) >= 2 and n > sizes[-1]:
            (n1, n2) = sizes[-2:]
            slope = max(0.0, (per_message[n2] - per_message[n1]) / (n2 - n1))
            seconds = per_message[n2] + slope * (n - n2)
        return n * seconds * 1.15 + 3

    def fits(seconds: float) -> bool:
        return time.monotonic() - started + seconds + 10 <= plan.budget  # 10 s: the report

    def count(runs: list, n: int, c: int) -> int:
        return sum(1 for r in runs if (r.n, r.concurrency) == (n, c))

    def ours_up_to_runs(n: int, c: int) -> None:
        while (have := count(results.ours, n, c)) < plan.runs:
            seconds = predict(n, c, results.ours)
            if not fits(seconds):
                results.left_out.append(
                    f"our send {label(n)} C={c}: {plan.runs - have} of {plan.runs} runs "
                    f"(~{seconds:.0f}s each)"
                )
                return
            results.ours += repeat(
                1, f"our send {label(n)} C={c}", lambda _: run_ours(space, n, c, f"x{have}")
            )

    ours_up_to_runs(big, 20)
    for n, seconds in plan.memory_capped:
        full = predict(n, 20, results.ours)
        if fits(full):
            results.ours += repeat(
                1, f"our send {label(n)} C=20", lambda _, n=n: run_ours(space, n, 20, "full")
            )
            continue
        results.left_out.append(
            f"a full send to {label(n)} (~{full:.0f}s): one stopped after {seconds:.0f}s instead"
        )
        results.capped += repeat(
            1,
            f"our send {label(n)} C=20, stopped after {seconds:.0f}s",
            lambda _, n=n, s=seconds: run_ours(space, n, 20, "capped", stop_after=s),
        )
    for c in (10, 1):
        ours_up_to_runs(big, c)
    for c in (20, 10, 1):
        if not count(results.ours, big, c):
            continue
        while (have := count(results.source, big, c)) < plan.runs:
            seconds = predict(big, c, results.source)
            if not fits(seconds):
                results.left_out.append(
                    f"smtp-source {label(big)} C={c}: {plan.runs - have} of {plan.runs} runs "
                    f"(~{seconds:.0f}s each)"
                )
                break
            results.source += repeat(
                1, f"smtp-source {label(big)} C={c}", lambda _, c=c: run_smtp_source(space, big, c)
            )


def run_sections(plan: Plan, workdir: Path, names: list[str]) -> Results:
    """Only sections 8 and/or 9 (`--sections million,pg-workers`): the workspace they need
    (the articles, the stored edition) and nothing else measured."""
    started = time.monotonic()
    results = Results(
        plan=plan.name,
        started=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        machine=machine_info(),
        edition={},
        load_before=os.getloadavg(),
        code=code_version(),
    )
    space = prepare(workdir, [])
    results.edition = {"html_bytes": space.html_bytes, "message_bytes": space.message_bytes}
    if "million" in names:
        run_million(plan, space, results)
    if "pg-workers" in names:
        run_pg_workers(plan, space, results)
    results.load_after = os.getloadavg()
    results.code_after = code_version()
    results.seconds = time.monotonic() - started
    return results


def code_version() -> dict:
    """Which code was measured: the commit HEAD names (read from .git, no git command run)
    and a digest of the send path's sources, which also changes with uncommitted edits."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "newsletter").rglob("*.py")) + sorted(
        (ROOT / "templates").glob("edition.*")
    ):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    commit = "unknown"
    try:
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = ROOT / ".git" / ref
            if ref_file.exists():
                commit = ref_file.read_text().strip()
            else:
                packed = (ROOT / ".git" / "packed-refs").read_text().splitlines()
                commit = next((ln.split()[0] for ln in packed if ln.endswith(" " + ref)), commit)
        else:
            commit = head
    except OSError:
        pass
    return {"commit": commit[:12], "sources_sha256": digest.hexdigest()[:12]}


def check_tools() -> list[str]:
    return [tool for tool in ("smtp-sink", "smtp-source") if find_tool(tool) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, one run (< 1 minute)")
    parser.add_argument("--output", type=Path, help="the report (default: BENCHMARKS.md)")
    parser.add_argument("--json", type=Path, help="raw figures (default: var/bench/<plan>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (DBs, logs)")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: render the report again from raw figures saved by a run",
    )
    parser.add_argument(
        "--budget",
        type=float,
        help=f"seconds for the full run; extras run while they fit (default {FULL.budget:.0f})",
    )
    parser.add_argument(
        "--million-full",
        action="store_true",
        help="section 8 sends to the whole 1,000,000 list (~20 minutes more), not a minute of it",
    )
    parser.add_argument(
        "--sections",
        help="measure only these (comma-separated: million, pg-workers); the report goes to "
        "--output (default var/bench/sections.md), BENCHMARKS.md is left alone",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        results, plan = load(args.from_json)
        text = report(results, plan)
        (args.output or ROOT / "BENCHMARKS.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    plan = QUICK if args.quick else FULL
    if args.budget is not None and not args.quick:
        plan = dataclasses.replace(plan, budget=args.budget)
    missing = check_tools()
    if missing:
        print(
            f"error: {', '.join(missing)} not found: install Debian's postfix package "
            "(bash scripts/install-system-deps.sh, as root) and run again",
            file=sys.stderr,
        )
        return 2
    if args.million_full:
        plan = dataclasses.replace(plan, million_full=True)
    if args.sections:
        return main_sections(plan, args)
    output = args.output or ROOT / "BENCHMARKS.md"
    raw = args.json or ROOT / "var" / "bench" / f"{plan.name}.json"
    workdir = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
    log(f"{plan.name} run; work dir {workdir}")
    try:
        results = run_plan(plan, workdir)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    text = report(results, plan)
    save(results, raw)
    output.write_text(text, encoding="utf-8")
    print(text)
    log(f"wrote {output} and {raw} in {results.seconds:.0f}s")
    return 0


def main_sections(plan: Plan, args: argparse.Namespace) -> int:
    """`--sections`: run the named sections only and write their report apart."""
    names = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(names) - {"million", "pg-workers"})
    if unknown:
        known = "million, pg-workers"
        print(f"error: unknown section(s) {', '.join(unknown)}: {known}", file=sys.stderr)
        return 2
    output = args.output or ROOT / "var" / "bench" / "sections.md"
    raw = args.json or ROOT / "var" / "bench" / f"{plan.name}-sections.json"
    workdir = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
    log(f"{plan.name} plan, sections {', '.join(names)}; work dir {workdir}")
    try:
        results = run_sections(plan, workdir, names)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    text = report_only(results, plan)
    save(results, raw)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(text)
    log(f"wrote {output} and {raw} in {results.seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
