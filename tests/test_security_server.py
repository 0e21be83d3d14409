"""Attacks on the exports, the headers and the HTTP server, replayed over HTTP (issue 11).

Each test quotes the attack as the issue states it and fails if it gets through:
the CSV export read with another separator, another site framing the public pages
(in Chromium), half-open connections held for ever by the real `newsletter serve`,
and /metrics read by anyone.
"""

from __future__ import annotations

import re
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import livesite
import pytest
from conftest import Cli
from pydantic import SecretStr
from test_deploy_nginx import newsletter_serve
from test_subscriber_csv import formulas_in
from webeditor import EditorClient, editor_settings

from newsletter import subscribers as subscriber_ops
from newsletter.web import archive
from newsletter.web.editor_common import EDITOR_CSP

ATTACK_NAME = "x;=cmd|' /C calc'!A0"
METRICS_TOKEN = "scrape-token-5f0c2d9a41b7"


@pytest.fixture
def web_settings(settings):
    return editor_settings(settings)


@pytest.fixture
def site(web_settings) -> Iterator[str]:
    with livesite.serve(web_settings) as url:
        yield url


# Exports


def test_the_editors_csv_export_holds_no_formula_for_any_separator(site, engine):
    """Attack: "the CSV export's formula guard misses `x;=cmd|' /C calc'!A0` (written bare;
    a `;`-separated spreadsheet sees a formula)"."""
    subscriber_ops.add_subscriber(engine, "ann@example.com", ATTACK_NAME)
    subscriber_ops.add_subscriber(engine, "a|=1+1@example.com", "Bob; @SUM(A1)")
    editor = EditorClient(site)
    try:
        assert editor.login().status_code == 303
        export = editor.get("/editor/subscribers.csv")
    finally:
        editor.close()
    assert export.status_code == 200
    assert ATTACK_NAME.split(";")[0] in export.text  # the name is there, guarded
    assert formulas_in(export.text) == []


# Headers

PUBLIC_PATHS = (
    "/archive",
    "/archive/feed.xml",
    "/archive/2026-11-25",  # no such edition: the 404 page
    "/subscribe",
    "/confirm/not-a-token",
    "/unsubscribe/not-a-token",
    "/unsubscribe",
    "/no-such-page",
    "/healthz",
    "/metrics",
)


def test_public_pages_forbid_framing_sniffing_and_leaking_the_path(site):
    """Attack: "public pages have no `frame-ancestors`"."""
    with httpx.Client(base_url=site, timeout=30) as client:
        for path in PUBLIC_PATHS:
            response = client.get(path)
            assert response.status_code < 500, path
            csp = response.headers.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp, (path, csp)
            assert "default-src 'none'" in csp, (path, csp)
            assert response.headers.get("x-content-type-options") == "nosniff", path
            assert response.headers.get("referrer-policy"), path
        login = client.get("/editor/login")
    assert login.headers["content-security-policy"] == EDITOR_CSP  # a route's own one stays


def test_an_error_page_from_a_failing_route_carries_the_headers_too(site, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected: the archive query fails")

    monkeypatch.setattr(archive, "list_published", broken)
    with httpx.Client(base_url=site, timeout=30) as client:
        response = client.get("/archive")
    assert response.status_code == 500
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


@contextmanager
def framing_site(target: str) -> Iterator[str]:
    """Another origin (its own port) whose page frames the site's /archive and /subscribe,
    and, as the control that framing works at all, a page of its own."""
    page = (
        "<!DOCTYPE html><title>evil</title>"
        f'<iframe name="archive" src="{target}/archive"></iframe>'
        f'<iframe name="subscribe" src="{target}/subscribe"></iframe>'
        '<iframe name="own" src="/own"></iframe>'
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = page if self.path == "/" else b"<!DOCTYPE html><p id=own>framed fine</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_another_site_cannot_frame_the_archive_or_the_subscribe_form_in_chromium(site):
    """Attack: "public pages have no `frame-ancestors`" (a page on another origin frames
    the sign-up form to trick a click)."""
    with framing_site(site) as evil, livesite.browser_context() as context:
        page = context.new_page()
        refusals: list[str] = []
        page.on("console", lambda message: refusals.append(message.text))
        page.goto(f"{evil}/", wait_until="load")
        frames = {frame.name: frame for frame in page.frames if frame is not page.main_frame}
        assert frames["own"].locator("#own").text_content(timeout=10_000) == "framed fine"
        for name, marker in (("archive", "Archive"), ("subscribe", 'name="email"')):
            frame = frames[name]
            assert not frame.url.startswith(site), (name, frame.url)  # Chromium's error page
            assert marker not in frame.content(), name
        assert any("frame-ancestors" in text for text in refusals), refusals


# /metrics


def test_metrics_behind_a_token_answer_only_its_bearer(web_settings):
    """Attack: "`/metrics` is open to anyone" (it should be able to be put behind a token)."""
    settings = web_settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    with livesite.serve(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        anyone = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
        basic = client.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"})
        scraper = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        health = client.get("/healthz")
    for refused in (anyone, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "newsletter_" not in refused.text
    assert scraper.status_code == 200 and "newsletter_database_up 1" in scraper.text
    assert health.status_code == 200 and health.json()["database"] == "ok"


def test_metrics_without_a_token_setting_stay_open(site):
    with httpx.Client(base_url=site, timeout=30) as client:
        response = client.get("/metrics")
    assert response.status_code == 200 and "newsletter_database_up 1" in response.text


# The HTTP server's limits, on the real `newsletter serve`

HALF_OPEN = 800  # of which, besides half a request line from the start:
AFTER_A_RESPONSE = 100  # a whole request first, then half of the next one
SLOW_FORM = 100  # the headers of a form POST, then a few bytes of its body
AFTER_AN_EARLY_ANSWER = 100  # a POST the app answers (404) before the body is in
STALL = b"GET /archive HT"  # half a request line, never finished
FORM_HEAD = (
    b"Host: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 1000\r\n\r\nemail=a"
)
DEADLINE = 60.0  # seconds: generous; the timeouts in these tests are 5


@contextmanager
def served(cli_env: Cli, tmp_path, **settings: str) -> Iterator[tuple[str, int]]:
    env = Cli(cli_env)
    env.update({f"NEWSLETTER_{key.upper()}": value for key, value in settings.items()})
    with newsletter_serve(env, tmp_path / "serve.log") as url:
        found = re.match(r"http://(127\.0\.0\.1):(\d+)$", url)
        assert found, url
        yield found.group(1), int(found.group(2))


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=30)
    sock.setblocking(False)
    return sock


def send_all(sock: socket.socket, data: bytes) -> None:
    sock.setblocking(True)
    sock.sendall(data)
    sock.setblocking(False)


def read_response(sock: socket.socket) -> bytes:
    """One whole response to a request without a body (Content-Length framed)."""
    sock.setblocking(True)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    sock.setblocking(False)
    return head


def wait_closed(socks: list[socket.socket], *, deadline: float) -> list[bytes]:
    """Read each socket to its end (EOF or reset); what each sent. Fails at the deadline."""
    received = {sock: b"" for sock in socks}
    open_ = set(socks)
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while open_:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(open_)} of {len(socks)} connections still open"
            for key, _ in selector.select(timeout=min(left, 1.0)):
                sock = key.fileobj
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                except BlockingIOError:
                    continue
                if chunk:
                    received[sock] += chunk
                else:
                    selector.unregister(sock)
                    open_.discard(sock)
    return [received[sock] for sock in socks]


def test_half_open_connections_are_closed_by_the_header_timeout(cli_env, tmp_path):
    """Attack: "800 half-open connections are held indefinitely (no header timeout)"."""
    log = tmp_path / "serve.log"
    kinds = (
        [b"after a response"] * AFTER_A_RESPONSE
        + [b"slow form"] * SLOW_FORM
        + [b"after an early answer"] * AFTER_AN_EARLY_ANSWER
    )
    kinds += [b"half a request line"] * (HALF_OPEN - len(kinds))
    with ExitStack() as stack:
        address = stack.enter_context(
            served(cli_env, tmp_path, http_header_timeout="5", http_body_timeout="5")
        )
        stalled = []
        for kind in kinds:
            sock = connect(address)
            stack.callback(sock.close)
            if kind == b"after a response":
                send_all(sock, b"GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(sock).startswith(b"HTTP/1.1 404")
                send_all(sock, STALL)
            elif kind == b"slow form":
                send_all(sock, b"POST /subscribe HTTP/1.1\r\n" + FORM_HEAD)
            elif kind == b"after an early answer":
                send_all(sock, b"POST /no-such-page HTTP/1.1\r\n" + FORM_HEAD)
            else:
                send_all(sock, STALL)
            stalled.append(sock)
        base = f"http://{address[0]}:{address[1]}"
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200  # others are served
        leftovers = wait_closed(stalled, deadline=time.monotonic() + DEADLINE)
    for kind, data in zip(kinds, leftovers, strict=True):  # closed, and not answered
        assert data.startswith(b"HTTP/1.1 404") if kind == b"after an early answer" else not data
    assert "Traceback" not in log.read_text()


def test_connections_beyond_the_limit_are_refused_at_once_and_idle_ones_closed(cli_env, tmp_path):
    with ExitStack() as stack:
        address = stack.enter_context(
            served(
                cli_env,
                tmp_path,
                http_max_connections="20",
                http_header_timeout="120",
                http_keepalive_timeout="1",
            )
        )
        idle = connect(address)
        send_all(idle, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle).startswith(b"HTTP/1.1 200")
        assert wait_closed([idle], deadline=time.monotonic() + DEADLINE) == [b""]
        idle.close()

        held = []
        for _ in range(20):  # every slot taken by a connection the server has seen
            sock = connect(address)
            stack.callback(sock.close)
            send_all(sock, b"GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 404")
            send_all(sock, STALL)
            held.append(sock)
        extra = connect(address)
        stack.callback(extra.close)
        [answer] = wait_closed([extra], deadline=time.monotonic() + DEADLINE)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
