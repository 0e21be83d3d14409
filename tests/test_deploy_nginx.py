"""Debian's nginx with the shipped deploy/nginx.conf in front of a real `newsletter serve`.

The shipped file is rewritten only where a test must differ from a server:
loopback and free ports instead of 80/443, a self-signed certificate, the app's
port, and a main nginx.conf around it that keeps pid, logs and temp files in a
temp dir. nginx runs in the foreground (`daemon off`), as nobody when the tests
run as root. The client connects from 127.0.0.2, so the address nginx saw is
not the proxy's own (127.0.0.1), and it always sends a spoofed X-Forwarded-For.

Checked through it: the consent record keeps the address nginx saw, the session
cookie is Secure, plain http redirects to https, and the RFC 8058 one-click POST
to the List-Unsubscribe URL of a real sent edition unsubscribes.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from newsletter.capture import free_port
from newsletter.models import SubscriberStatus
from newsletter.store import consent as consent_store
from newsletter.store import subscribers as subscriber_store
from newsletter.store.engine import open_engine

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
OPENSSL = shutil.which("openssl")
CLIENT_ADDRESS = "127.0.0.2"  # loopback too, but not the proxy's address
SPOOF = "203.0.113.66"
DAY = "2026-11-25"
NOBODY = 65534

needs_nginx = pytest.mark.skipif(
    NGINX is None or OPENSSL is None,
    reason="nginx or openssl is not installed (scripts/install-system-deps.sh installs nginx)",
)


# Starting the parts


@contextmanager
def newsletter_serve(cli_env, log: Path) -> Iterator[str]:
    """`newsletter serve --port 0` as a subprocess; yields its URL, read from its first line."""
    with log.open("w") as errors:
        process = subprocess.Popen(
            [*cli_env.command, "serve", "--port", "0"],
            env=dict(cli_env),
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    try:
        line = read_line(process, deadline=time.monotonic() + 30)
        found = re.match(rb"serving on (http://127\.0\.0\.1:\d+) ", line)
        assert found, f"{line!r}\n{log.read_text()}"
        yield found.group(1).decode()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()


def read_line(process: subprocess.Popen, *, deadline: float) -> bytes:
    """The first line a process prints, waiting until `deadline` at most."""
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(timeout=left):
                raise AssertionError(f"no line from {process.args} in time (got {data!r})")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"{process.args} exited ({process.wait()}): {data!r}")
            data += chunk
    return data.split(b"\n", 1)[0]


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def site_config(*, app_port: int, https_port: int, http_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx.conf with test ports and certificate; each change must find its target."""
    text = SITE.read_text(encoding="utf-8")
    changes = [
        (r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        (r"listen \[::\]:443 ssl;", ""),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen \[::\]:80;", ""),
        (r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};"),
        (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{app_port};"),
    ]
    for pattern, replacement in changes:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"deploy/nginx.conf no longer has {pattern!r}"
    return text


@contextmanager
def nginx_prefix() -> Iterator[Path]:
    """A throwaway folder for nginx's config, certificate, pid, logs and temp files.

    Not under pytest's tmp_path: that is private to root, and nginx runs as nobody.
    """
    folder = Path(tempfile.mkdtemp(prefix="nginx-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def nginx(folder: Path, site: str) -> Iterator[None]:
    """nginx in the foreground serving `site`, everything it writes inside `folder`."""
    (folder / "site.conf").write_text(site, encoding="utf-8")
    temp = "".join(
        f"  {kind}_temp_path {folder}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (folder / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  access_log {folder}/access.log;\n{temp}"
        f"  include {folder}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    as_user: dict = {}
    if os.geteuid() == 0:  # run it as nobody, never as root
        as_user = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        for path in [folder, *folder.iterdir()]:
            os.chown(path, NOBODY, NOBODY)
    command = [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")]
    command += ["-e", str(folder / "error.log")]
    checked = subprocess.run(
        [*command, "-t"], capture_output=True, text=True, timeout=30, **as_user
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **as_user
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_listening(port: int, folder: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                log = folder / "error.log"
                raise AssertionError(
                    log.read_text() if log.exists() else "nginx did not start"
                ) from None
            time.sleep(0.05)


def client_from(address: str, base_url: str, cert: Path | None = None) -> httpx.Client:
    """An HTTP client whose connections come from `address` (trusting `cert` for https)."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(cert)) if cert else True
    transport = httpx.HTTPTransport(local_address=address, verify=verify, retries=0)
    return httpx.Client(base_url=base_url, transport=transport, timeout=30)


# Steps of a visit


def sign_up_and_confirm(client: httpx.Client, smtp_server, email: str) -> httpx.Response:
    """Sign up on /subscribe and press the emailed Confirm button, lying in every header."""
    lies = {"X-Forwarded-For": SPOOF, "X-Forwarded-Proto": "http", "Forwarded": f"for={SPOOF}"}
    form = client.get("/subscribe", headers=lies)
    assert form.status_code == 200, form.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    data = {"csrf_token": csrf, "email": email, "name": "", "website": ""}
    signed_up = client.post("/subscribe", data=data, headers=lies)
    assert signed_up.status_code == 200 and "Check your inbox" in signed_up.text
    text = smtp_server.received[-1].message.get_body(("plain",)).get_content()
    path = re.search(r"https?://\S+?(/confirm/\S+)", text).group(1)
    assert client.post(path, headers=lies).status_code == 200
    return form


def consent_ip(cli_env, email: str) -> str:
    engine = open_engine(cli_env["NEWSLETTER_DATABASE_URL"])
    return consent_store.get_consent(engine, email).consent_ip


# The tests


@needs_nginx
def test_through_nginx_the_client_is_who_nginx_saw_cookies_are_secure_and_one_click_works(
    cli_env, smtp_server, tmp_path
):
    https_port, http_port = free_port(), free_port()
    public = f"https://127.0.0.1:{https_port}"
    cli_env.update(NEWSLETTER_TRUSTED_PROXIES="127.0.0.1", NEWSLETTER_BASE_URL=public)
    cli_env.run("init", cwd=tmp_path)

    with newsletter_serve(cli_env, tmp_path / "serve.log") as app_url, nginx_prefix() as folder:
        cert, key = self_signed(folder)
        app_port = int(app_url.rsplit(":", 1)[1])
        site = site_config(
            app_port=app_port, https_port=https_port, http_port=http_port, cert=cert, key=key
        )
        with nginx(folder, site):
            wait_listening(https_port, folder)
            with client_from(CLIENT_ADDRESS, public, cert) as browser:
                form = sign_up_and_confirm(browser, smtp_server, "ann@example.com")
            # The form cookie, set over https through nginx, is Secure.
            cookie = form.headers["set-cookie"]
            assert cookie.startswith("newsletter_form=") and "secure" in cookie.lower()
            # nginx saw 127.0.0.2; the app recorded that, not the spoof nor nginx itself.
            assert consent_ip(cli_env, "ann@example.com") == CLIENT_ADDRESS

            # Plain http only redirects to the https site.
            with client_from(CLIENT_ADDRESS, f"http://127.0.0.1:{http_port}") as plain:
                moved = plain.get("/subscribe")
            assert moved.status_code == 301
            assert moved.headers["location"] == "https://127.0.0.1/subscribe"

            # A real edition's List-Unsubscribe URL, one-click POST (RFC 8058) as a mail
            # provider sends it: no cookie, no CSRF token, through nginx.
            sent = cli_env.run("send", "--date", DAY)
            assert "sent 1," in sent.stdout, sent.stdout
            edition = message_from_bytes(smtp_server.received[-1].data, policy=policy.default)
            assert edition["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            url = re.search(r"<(https://[^>]+)>", edition["List-Unsubscribe"]).group(1)
            assert url.startswith(f"{public}/unsubscribe/")
            with client_from(CLIENT_ADDRESS, public, cert) as provider:
                done = provider.post(
                    url,
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            assert done.status_code == 200
            engine = open_engine(cli_env["NEWSLETTER_DATABASE_URL"])
            subscriber = subscriber_store.get_subscriber(engine, "ann@example.com")
            assert subscriber.status is SubscriberStatus.UNSUBSCRIBED

    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_serve_ignores_forwarded_headers_unless_a_proxy_is_trusted(cli_env, smtp_server, tmp_path):
    """By default nobody is trusted, loopback included: what uvicorn alone used to believe."""
    cli_env["NEWSLETTER_BASE_URL"] = "http://news.test"  # only a forwarded https makes it Secure
    cli_env.run("init", cwd=tmp_path)
    with newsletter_serve(cli_env, tmp_path / "serve.log") as app_url:
        with client_from("127.0.0.1", app_url) as direct:
            form = sign_up_and_confirm(direct, smtp_server, "ann@example.com")
    assert consent_ip(cli_env, "ann@example.com") == "127.0.0.1"
    assert "secure" not in form.headers["set-cookie"].lower()
