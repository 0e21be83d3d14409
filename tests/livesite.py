"""The web app served for real (uvicorn in a thread, 127.0.0.1, free port) and a real
headless Chromium driven by Playwright, for the tests of pages people use.

Chromium is Debian's (/usr/bin/chromium, installed by scripts/install-system-deps.sh);
Playwright never downloads a browser here. The closed network needs the flags below,
and every launch gets a fresh profile directory.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from newsletter.config import Settings
from newsletter.listen import listen

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@contextmanager
def serve(settings: Settings, *, own_url: bool = False) -> Iterator[str]:
    """Run `create_app(settings)` under uvicorn; yields its base URL.

    `own_url`: the app's BASE_URL becomes the URL it is served at (so emailed links
    point at it); the caller makes the same copy of its settings from the URL.
    """
    from newsletter.web import create_app

    sock = listen("127.0.0.1", 0)  # bound here: no other process can take the port meanwhile
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if own_url:
        settings = settings.model_copy(update={"base_url": url})
    # proxy_headers=False as `newsletter serve` has it: X-Forwarded-* are the app's to judge.
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", proxy_headers=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def browser_context(**options) -> Iterator[object]:
    """A Playwright browser context in Debian's Chromium with a throwaway profile."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_FLAGS,
                **options,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def artifact(name: str) -> Path:
    """Where a test saves a screenshot for people to look at (kept after the run)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
