"""The benchmark's plan and the figures each kind of run yields, saved as JSON.

Shared by `bench/run.py` (which measures) and `bench/report.py` (which writes
BENCHMARKS.md), so a report can be rendered again from saved figures.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

DELAY = 0.025  # the slow relay's added latency per reply


# ── the plan ─────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Plan:
    name: str
    runs: int  # runs per figure (the median is reported)
    ours: tuple[tuple[int, tuple[int, ...], int], ...]  # (N, concurrencies, runs)
    source: tuple[tuple[int, tuple[int, ...], int], ...]
    handwritten_n: int
    slow_per_connection: int  # messages per connection through the slow relay
    memory_capped: tuple[tuple[int, float], ...]  # (N, seconds): a full send if time allows
    profile_n: int
    dkim: tuple[int, int, int] = (10_000, 20, 3)  # (N, CONCURRENCY, runs) signed
    dkim_seconds: float = 3.0  # per micro-measure of bench/dkim_speed.py
    budget: float = 0.0  # seconds for the whole run; extras run while they fit (0: none)
    million: int = 1_000_000  # the big list: import, time to queue, a send (bench/million.py)
    million_send_seconds: float = 60.0  # its send is stopped after this (a full one: ~20 min)
    million_full: bool = False  # `--million-full`: send to the whole big list instead
    pg_workers_n: int = 100_000  # the list two sender processes share on PostgreSQL


FULL = Plan(
    name="full",
    runs=3,
    ours=((10_000, (1, 10, 20), 3), (100_000, (20,), 1)),
    source=((10_000, (1, 10, 20), 3),),
    handwritten_n=2_000,
    slow_per_connection=10,
    memory_capped=((300_000, 15.0),),
    profile_n=10_000,
    budget=560.0,
)

QUICK = Plan(
    name="quick",
    runs=1,
    ours=((300, (1, 10, 20), 1), (1_000, (20,), 1)),
    source=((300, (1, 10, 20), 1), (1_000, (20,), 1)),
    handwritten_n=200,
    slow_per_connection=5,
    memory_capped=(),
    profile_n=200,
    dkim=(300, 20, 1),
    dkim_seconds=0.3,
    million=3_000,
    million_send_seconds=2.0,
    pg_workers_n=500,
)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


# ── the results of each kind of run ─────────────────────────────────────────


@dataclass
class OursRun:
    n: int
    concurrency: int
    sent: int
    sink_messages: int
    wall: float
    cpu: float
    maxrss_mb: float
    first_message: float | None  # seconds from process start to the sink's first message
    first_sent_row: float | None  # same, from the first `sent` row's timestamp in the DB
    sink_cpu: float
    rss_quarter_mb: float | None = None
    rss_half_mb: float | None = None
    stopped_after: float | None = None
    relay: dict | None = None
    pipelining: bool = True
    dkim: str = ""  # the DKIM keys it signed with: "" (none), "rsa", "rsa+ed25519"

    @property
    def rate(self) -> float:
        return self.sent / self.wall

    @property
    def cpu_per_1000(self) -> float | None:
        return self.cpu / self.sent * 1000 if self.sent else None

    @property
    def steady_rate(self) -> float | None:
        """Through the relay: the sum over connections of each one's rate between its first
        and last accepted message (start-up and connection set-up left out)."""
        if not self.relay:
            return None
        rates = [
            (count - 1) / (last - first)
            for count, first, last in self.relay.get("per_session", [])
            if count >= 2 and last > first
        ]
        return sum(rates) if rates else None


@dataclass
class SourceRun:
    n: int
    concurrency: int
    received: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.received / self.wall


@dataclass
class HandRun:
    n: int
    sent: int
    wall: float
    loop_seconds: float
    cpu: float
    maxrss_mb: float

    @property
    def rate(self) -> float:
        return self.sent / self.wall

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu / self.sent * 1000


@dataclass
class Results:
    plan: str
    started: str
    machine: dict
    edition: dict
    ours: list[OursRun] = field(default_factory=list)
    source: list[SourceRun] = field(default_factory=list)
    hand: list[HandRun] = field(default_factory=list)
    slow: list[OursRun] = field(default_factory=list)
    capped: list[OursRun] = field(default_factory=list)
    signed: list[OursRun] = field(default_factory=list)  # our send with DKIM keys
    dkim_speed: dict = field(default_factory=dict)  # bench/dkim_speed.py's messages/s
    profile: dict | None = None
    profile_run: OursRun | None = None
    import_seconds: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    interruptions: list[str] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # what the time budget did not allow
    budget: float = 0.0
    code: dict = field(default_factory=dict)
    code_after: dict = field(default_factory=dict)  # the same at the end: did it change?
    million: dict = field(default_factory=dict)  # bench/million.py's run_million
    pg_workers: dict = field(default_factory=dict)  # bench/million.py's run_pg_workers


def grouped(runs: list, key: Callable) -> dict:
    out: dict = {}
    for run in runs:
        out.setdefault(key(run), []).append(run)
    return out


def load(path: Path) -> tuple[Results, Plan]:
    """Results saved by `save`, to render the report again (`--from-json`)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    runs = {"ours": OursRun, "slow": OursRun, "capped": OursRun, "signed": OursRun}
    runs |= {"source": SourceRun, "hand": HandRun}
    for key, kind in runs.items():
        data[key] = [kind(**item) for item in data.get(key, [])]
    if data.get("profile_run"):
        data["profile_run"] = OursRun(**data["profile_run"])
    data["import_seconds"] = {int(k): v for k, v in data.get("import_seconds", {}).items()}
    known = {f.name for f in dataclasses.fields(Results)}
    results = Results(**{k: v for k, v in data.items() if k in known})
    plan = QUICK if results.plan == "quick" else dataclasses.replace(FULL, budget=results.budget)
    return results, plan


def save(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(results), indent=1, default=str), encoding="utf-8")
