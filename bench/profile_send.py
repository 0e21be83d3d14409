"""Where the sender's CPU goes per message: `newsletter send` into smtp-sink, profiled.

Not part of `make bench` (bench/run.py owns the report); a tool for whoever works on
the CPU per message. It prepares a workspace the way `bench.run.prepare` does (the
edition stored, N subscribers imported into a SQLite file), then:

1. runs `newsletter send` plainly, RUNS times, and prints CPU seconds per 1,000
   messages (user + sys of the sender process alone, from wait4) and msg/s, so a
   change can be judged without the profiler's own overhead;
2. runs it once more under cProfile and prints the top functions by own time and by
   cumulative time (cProfile sees the event loop's thread only, and slows what it sees);
3. with --py-spy, once more under py-spy (`pip install py-spy`), which samples every
   thread (the database work runs in `asyncio.to_thread`) at a small cost, and prints
   the share of samples per function, own and inclusive.

    python -m bench.profile_send                 # 10k subscribers, CONCURRENCY 20
    python -m bench.profile_send -n 20000 --runs 3 --top 25
    python -m bench.profile_send --keep var/prof  # keep the workspace and send.prof
    python -m bench.profile_send --runs 0 --no-profile --py-spy
"""

from __future__ import annotations

import argparse
import collections
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import DAY, NEWSLETTER, Workspace, _short, copy_db, dkim_env, prepare, run_ours
from bench.sink import Sink


def print_top(path: Path, top: int) -> None:
    """The top functions by own time and by cumulative time, with short file names."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values())
    print(f"\nprofile: {total:.2f} s of own time in all")

    def name_of(key: tuple) -> str:
        filename, line, name = key
        return f"{_short(filename)}:{line}({name})" if filename != "~" else name

    for title, column in (("own time (tottime)", 2), ("cumulative", 3)):
        print(f"\ntop {top} by {title}:")
        print(f"{'ncalls':>9} {'tottime':>8} {'cumtime':>8}  function")
        rows = sorted(stats.items(), key=lambda item: -item[1][column])[:top]
        for key, (_, ncalls, tottime, cumtime, _) in rows:
            print(f"{ncalls:>9} {tottime:>8.3f} {cumtime:>8.3f}  {name_of(key)}")


def run_py_spy(space: Workspace, n: int, concurrency: int, dkim: str, top: int) -> None:
    """One send under `py-spy record --format raw` (every thread, idle samples left out)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    rundir = space.root / f"py-spy-{time.monotonic_ns()}"
    rundir.mkdir()
    db = rundir / "newsletter.db"
    copy_db(space.dbs[n], db)
    out = rundir / "send.txt"
    sink = Sink(rundir)
    try:
        command = [py_spy, "record", "--format", "raw", "--rate", "200", "--threads", "--nolineno"]
        command += ["--output", str(out), "--", str(NEWSLETTER), "send", "--date", DAY.isoformat()]
        subprocess.run(
            command,
            env=space.env(db, sink.port, concurrency) | dkim_env(dkim),
            cwd=rundir,
            check=True,
            timeout=1800,
            stdout=subprocess.DEVNULL,
        )
    finally:
        sink.stop()
    summarize_py_spy(out, top)


# Leaves where a thread waits with the GIL released: py-spy cannot always tell them idle
_WAITING = ("_worker (", "Condition.wait (", "EpollSelector.select (", "Event.wait (")


def summarize_py_spy(path: Path, top: int) -> None:
    """Share of the busy samples by thread, and by function (own and inclusive)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        thread, *names = stack.split(";")
        if not names or names[-1].startswith(_WAITING):
            waiting += count
            continue
        total += count
        threads[thread.split(": ", 1)[-1]] += count
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    print(f"\npy-spy: {total} busy samples at 200 Hz ({total / 200:.1f} s), {waiting} waiting")
    for thread, count in threads.most_common(4):
        print(f"  {count / total:6.1%}  {thread}")
    for title, counter in (("own", own), ("inclusive", inclusive)):
        print(f"\ntop {top} by {title} samples:")
        for name, count in counter.most_common(top):
            print(f"  {count / total:6.1%}  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="subscribers (default 10,000)")
    parser.add_argument("-c", "--concurrency", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="plain runs before the profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--dkim", default="", help='"", "rsa" or "rsa+ed25519"')
    parser.add_argument("--no-profile", action="store_true", help="no cProfile run")
    parser.add_argument("--py-spy", action="store_true", help="one run under py-spy too")
    parser.add_argument("--keep", type=Path, help="a folder to keep the workspace in")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="profile-send-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        space = prepare(root, [args.n])
        per_1000 = []
        for number in range(args.runs):
            run = run_ours(space, args.n, args.concurrency, f"plain{number}", dkim=args.dkim)
            per_1000.append(run.cpu / run.sent * 1000)
            print(
                f"run {number + 1}: {run.sent:,} sent in {run.wall:.2f} s, "
                f"{run.sent / run.wall:,.0f} msg/s, CPU {run.cpu:.2f} s "
                f"({per_1000[-1]:.3f} s per 1,000), sink CPU {run.sink_cpu:.2f} s",
                flush=True,
            )
        if per_1000:
            print(f"median CPU per 1,000 messages: {statistics.median(per_1000):.3f} s")
        if not args.no_profile:
            profile = root / "send.prof"
            run_ours(space, args.n, args.concurrency, "profile", profile=profile, dkim=args.dkim)
            print_top(profile, args.top)
        if args.py_spy:
            run_py_spy(space, args.n, args.concurrency, args.dkim, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
