"""SMTP_SECURITY and credentials against a real aiosmtpd server with TLS and AUTH."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import subprocess

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.capture import free_port
from newsletter.errors import DeliveryError
from newsletter.models import DeliveryStatus
from newsletter.store import deliveries as delivery_store

DAY = dt.date(2026, 11, 25)
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
USER, PASSWORD = "sender", "s3cret-pässword"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with the system's openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class SecureHandler:
    def __init__(self):
        self.sessions: list[tuple[bool, object]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.sessions.append((encrypted, session.auth_data))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    )
    if not ok:
        return AuthResult(success=False, handled=False)  # aiosmtpd then answers 535
    return AuthResult(success=True, auth_data=auth_data.login)


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


@pytest.fixture(params=["starttls", "tls"])
def secure_server(request, certificate):
    handler = SecureHandler()
    options = dict(authenticator=authenticator, auth_required=True, auth_require_tls=True)
    if request.param == "starttls":
        options.update(tls_context=server_context(certificate), require_starttls=True)
    else:  # aiosmtpd only counts STARTTLS as TLS for AUTH; here the socket is TLS anyway
        options.update(ssl_context=server_context(certificate), auth_require_tls=False)
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10, **options
    )
    controller.start()
    yield request.param, controller, handler
    controller.stop()


def secured(settings, mode, controller, certificate, password=PASSWORD):
    return settings.model_copy(
        update={
            "smtp_port": controller.port,
            "smtp_security": mode,
            "smtp_username": USER,
            "smtp_password": SecretStr(password),
            "smtp_ca_file": certificate[0],
        }
    )


def test_sends_over_tls_with_login(engine, settings, secure_server, certificate):
    mode, controller, handler = secure_server
    for email in ("ann@example.com", "bob@example.com"):
        subscriber_ops.add_subscriber(engine, email)
    secure = secured(settings, mode, controller, certificate)
    prepared = prepare_edition(engine, secure, DAY)
    summary = asyncio.run(send_edition(engine, secure, prepared.stored))
    assert summary.sent == 2
    assert handler.sessions and all(tls and auth == USER.encode() for tls, auth in handler.sessions)


def test_wrong_password_stops_the_send_and_leaves_every_row_queued(
    engine, settings, secure_server, certificate
):
    mode, controller, handler = secure_server
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    wrong = secured(settings, mode, controller, certificate, password="nope")
    prepared = prepare_edition(engine, wrong, DAY)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(send_edition(engine, wrong, prepared.stored))
    assert "credentials" in str(caught.value) and "NEWSLETTER_SMTP_PASSWORD" in str(caught.value)
    assert handler.sessions == []
    counts = delivery_store.count_by_status(engine, prepared.stored.id)
    assert counts[DeliveryStatus.QUEUED] == 1


def test_an_untrusted_certificate_is_refused(engine, settings, secure_server, certificate):
    mode, controller, handler = secure_server
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    untrusting = secured(settings, mode, controller, certificate).model_copy(
        update={"smtp_ca_file": None}
    )
    prepared = prepare_edition(engine, untrusting, DAY)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(send_edition(engine, untrusting, prepared.stored))
    assert "certificate" in str(caught.value).lower()
    assert handler.sessions == []
