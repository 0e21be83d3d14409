"""The benchmark works: `python -m bench.run --quick` writes a report with every section.

Only the report's shape is checked (every section, a filled table in each
measured section, the sink's count matching the sent rows), never a timing:
speed is measured by `make bench`, not asserted by a test. The quick run takes
about 25 seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SECTIONS = (
    "## Machine",
    "## Headline",
    "## 1. Our send into smtp-sink",
    "## 2. The physical limit: smtp-source into smtp-sink",
    "## 3. The hand-written smtplib loop",
    "## 4. Slow relay (+25 ms per reply)",
    "## 5. Memory growth",
    "## 6. Where the time goes",
    "## 7. DKIM signing on and off",
    "## 8. 1,000,000 subscribers",
    "## 9. Two sender processes on PostgreSQL",
    "## Method",
    "## What was reduced, and why",
)
MEASURED = SECTIONS[:11]  # each of these holds a table with at least one row of figures


def _tool(name: str) -> str | None:
    path = f"/usr/sbin/{name}"
    return path if os.access(path, os.X_OK) else shutil.which(name)


@pytest.mark.skipif(
    _tool("smtp-sink") is None or _tool("smtp-source") is None,
    reason="smtp-sink/smtp-source not installed (Debian's postfix package: "
    "`bash scripts/install-system-deps.sh` as root installs it)",
)
def test_quick_benchmark_report_has_every_section(tmp_path: Path) -> None:
    report, raw = tmp_path / "BENCHMARKS.md", tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(report)]
        + ["--json", str(raw)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text(encoding="utf-8")

    positions = [text.find(heading + "\n") for heading in SECTIONS]
    missing = [h for h, at in zip(SECTIONS, positions, strict=True) if at < 0]
    assert not missing, f"sections missing from the report: {missing}"
    assert positions == sorted(positions), "sections out of order"

    bodies = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    by_heading = {"## " + body.split("\n", 1)[0]: body for body in bodies}
    for heading in MEASURED:
        rows = [
            line
            for line in by_heading[heading].splitlines()
            if line.startswith("|") and not line.startswith("|--") and "---" not in line
        ]
        assert len(rows) >= 2, f"{heading}: no table with figures"  # header + a row

    assert "Every run's sent count matched the sink's count." in text
    figures = json.loads(raw.read_text(encoding="utf-8"))
    assert figures["ours"] and figures["source"] and figures["hand"] and figures["slow"]
    assert {run["dkim"] for run in figures["signed"]} == {"rsa", "rsa+ed25519"}
    assert "compose, dkim rsa-2048" in figures["dkim_speed"]
    assert all(run["sent"] == run["n"] for run in figures["ours"] + figures["slow"])
    big = figures["million"]
    assert big["queue"]["queued"] == big["n"] and big["queue"]["rerun_queued"] == 0
    assert 0 < big["send"]["sent"] <= big["send"]["sink_messages"] and big["send"]["rss"]
    pg = figures["pg_workers"]
    if not pg.get("skipped"):
        assert [run["workers"] for run in pg["runs"]] == [1, 2]
        assert all(run["sent"] == run["sink_messages"] == pg["n"] for run in pg["runs"])
