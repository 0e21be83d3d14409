"""Messages composed and DKIM-signed per second on this machine: a micro-measure.

    python -m bench.dkim_speed [--seconds 3]

The benchmark's own 15-article edition (bench/articles.py, about 66 KB a message) is
rendered once; then, for one core, in a loop over recipients: `compose_message`
without a key, the same with RSA-2048 (`newsletter.dkim`, OpenSSL through
`cryptography`), with RSA-2048 and Ed25519, and dkimpy's `dkim.sign` (pure-Python RSA)
on the same unsigned bytes, if dkimpy is installed. `measure(settings, rendered)` is
what `make bench` runs (`micro`) beside its DKIM on/off sends.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.articles import write_day
from newsletter.app.build import render_fresh
from newsletter.compose import compose_message
from newsletter.config import Settings, load_settings
from newsletter.dkim import Dkim, DkimKey, read_private_key
from newsletter.models import Recipient, RenderedEdition
from newsletter.tokens import signer_for

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "tests" / "data" / "dkim"
DAY = dt.date(2026, 11, 26)


def rate(work: Callable[[int], object], seconds: float) -> float:
    """Calls of `work(n)` per second over about `seconds` (after one warm-up call)."""
    work(0)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        work(count)
        count += 1
    return count / elapsed


def measure(settings: Settings, rendered: RenderedEdition, seconds: float = 3.0) -> dict:
    """Messages per second (one core) for each way of making a recipient's message."""
    signer = signer_for(settings)
    rsa = DkimKey(
        "bench", settings.sender_domain, read_private_key(KEYS / "rsa-2048.pem", "rsa", "-")
    )
    ed = DkimKey(
        "benched", settings.sender_domain, read_private_key(KEYS / "ed25519.pem", "ed25519", "-")
    )
    signers = {"none": Dkim(), "rsa-2048": Dkim([rsa]), "rsa-2048+ed25519": Dkim([rsa, ed])}

    def compose(dkim: Dkim) -> Callable[[int], bytes]:
        def one(n: int) -> bytes:
            recipient = Recipient(n, f"reader{n}@example.com", f"Reader {n}")
            return compose_message(rendered, settings, recipient, signer=signer, dkim=dkim)

        return one

    sample = compose(signers["none"])(0)
    results: dict = {"message_bytes": len(sample)}
    for name, dkim in signers.items():
        results[f"compose, dkim {name}"] = rate(compose(dkim), seconds)
    results["sign only, rsa-2048 (cryptography)"] = rate(
        lambda n: signers["rsa-2048"].sign(sample), seconds
    )
    try:
        import dkim as dkimpy
    except ImportError:
        return results
    pem = (KEYS / "rsa-2048.pem").read_bytes()
    domain = settings.sender_domain.encode()
    results["sign only, rsa-2048 (dkimpy)"] = rate(
        lambda n: dkimpy.sign(sample, b"bench", domain, pem, canonicalize=(b"relaxed", b"relaxed")),
        seconds,
    )
    return results


def micro(seconds: float) -> dict:
    """`measure` on the benchmark's edition, rendered in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        write_day(Path(folder), DAY)
        settings = load_settings(
            articles_source=folder,
            templates_dir=ROOT / "templates",
            from_address="news@daily.example.org",
            base_url="https://news.example.org",
            secret_key="bench-secret-0123456789-abcdefghijklmnopqrstuv",
            max_articles=15,
        )
        fresh = render_fresh(settings, DAY)
        return measure(settings, fresh.rendered, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measure")
    args = parser.parse_args()
    results = micro(args.seconds)
    print(f"message size: {results.pop('message_bytes') / 1024:.1f} KB")
    for name, per_second in results.items():
        print(f"{name:40} {per_second:8.0f} messages/s")


if __name__ == "__main__":
    main()
