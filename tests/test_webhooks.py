"""Provider webhooks through the real app (issue 12, point 4).

The app runs in-process (Starlette's TestClient) over a real database, after a
real send to aiosmtpd, so the events name real deliveries by the Message-IDs
that went out. Requests are signed with keys the tests make (`webhooksigning`).
The SNS certificate host is a real HTTPS server on 127.0.0.1 (`ssl` around
`http.server`, its certificate issued by a CA the test makes), reached through
the real `SnsFetcher` with that CA as its trust store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import logging
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from starlette.testclient import TestClient
from webhooksigning import (
    MAILGUN_KEY,
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    TOPIC,
    SendgridKey,
    basic,
    body_of,
    key_pem,
    mailgun_event,
    mailgun_payload,
    now,
    pem,
    postmark_record,
    rsa_key,
    self_signed,
    sendgrid_event,
    server_certificate,
    ses_body,
    signed_sns,
)

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.bounces.providers import WebhookRefused
from newsletter.bounces.sns_certificates import SnsFetcher, SnsUnreachable
from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.store.schema import bounce_events, deliveries, subscribers
from newsletter.web import create_app
from newsletter.web.webhooks import MAX_BODY

DAY = dt.date(2026, 11, 25)
PEOPLE = ["ann@example.com", "zoe@example.org"]
CERT_PATH = "/SimpleNotificationService-test.pem"
LOCAL = re.compile(r"127\.0\.0\.1")
PROVIDERS = ["ses", "mailgun", "postmark", "sendgrid"]


# The SNS certificate host: a real HTTPS server on loopback


@dataclass
class CertificateHost:
    port: int
    client_context: ssl.SSLContext
    hits: dict[str, int] = field(default_factory=dict)
    confirmed: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = CERT_PATH) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def fetcher(self, **bounds: float) -> SnsFetcher:
        return SnsFetcher(self.client_context, host_pattern=LOCAL, **bounds)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sns_signer():
    key = rsa_key()
    return key, pem(self_signed(key))


@pytest.fixture(scope="module")
def cert_host(tmp_path_factory, sns_signer) -> Iterator[CertificateHost]:
    folder = tmp_path_factory.mktemp("sns-host")
    ca_key = rsa_key()
    ca = self_signed(ca_key, "webhook test CA", ca=True)
    key, certificate = server_certificate(ca_key, ca)
    (folder / "server.pem").write_bytes(pem(certificate) + key_pem(key))
    (folder / "ca.pem").write_bytes(pem(ca))
    certificate_pem = sns_signer[1]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            with host.lock:
                host.hits[path] = host.hits.get(path, 0) + 1
            if path == "/hang.pem":  # accepts, reads the request, never answers
                host.release.wait(120)  # set when the module's tests are done
                return
            if path == "/confirm":
                host.confirmed.append(self.path)
                self._send(b"<ConfirmSubscriptionResponse/>")
            elif path == "/huge.pem":
                self._send(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (100 * 1024))
            elif path == CERT_PATH:
                self._send(certificate_pem)
            else:
                self.send_error(404)

        def _send(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "server.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host = CertificateHost(
        server.server_address[1], ssl.create_default_context(cafile=str(folder / "ca.pem"))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def sendgrid_key() -> SendgridKey:
    return SendgridKey.make()


# A real send, and the site


@dataclass
class Sent:
    settings: object
    message_ids: dict[str, str]  # email -> the Message-ID of its delivery


@pytest.fixture
def sent(engine, settings, smtp_server, sendgrid_key) -> Sent:
    settings = settings.model_copy(
        update={
            "bounce_address": "bounces@news.example.org",  # VERP on: providers still match
            "bounce_limit": 1,
            "ses_topic_arns": TOPIC,
            "mailgun_signing_key": SecretStr(MAILGUN_KEY),
            "postmark_webhook_user": POSTMARK_USER,
            "postmark_webhook_password": SecretStr(POSTMARK_PASSWORD),
            "sendgrid_public_key": sendgrid_key.public,
        }
    )
    for email in PEOPLE:
        subscriber_ops.add_subscriber(engine, email, source="test")
    prepared = prepare_edition(engine, settings, DAY)
    asyncio.run(send_edition(engine, settings, prepared.stored))
    ids = {item.rcpt_tos[0]: item.message["Message-ID"] for item in smtp_server.received}
    assert sorted(ids) == PEOPLE
    return Sent(settings, ids)


@contextmanager
def site(settings, fetcher: SnsFetcher) -> Iterator[TestClient]:
    with TestClient(create_app(settings, sns=fetcher), base_url="https://testserver") as client:
        yield client


def state(engine) -> tuple:
    """Everything a webhook may change: subscribers, deliveries, bounce events."""
    with engine.connect() as conn:
        return (
            conn.execute(
                select(
                    subscribers.c.email, subscribers.c.status, subscribers.c.bounce_count
                ).order_by(subscribers.c.email)
            ).all(),
            conn.execute(select(deliveries.c.email, deliveries.c.status).order_by("email")).all(),
            conn.execute(
                select(bounce_events.c.kind, bounce_events.c.source, bounce_events.c.recipient)
            ).all(),
        )


@dataclass
class Poster:
    """Builds and posts one provider's signed requests."""

    provider: str
    client: TestClient
    cert_host: CertificateHost
    sns_key: object
    sendgrid: SendgridKey

    def request(self, kind: str, email: str, message_id: str) -> tuple[bytes, dict[str, str]]:
        if self.provider == "ses":
            body = ses_body(kind, email, message_id)
            message = signed_sns(self.sns_key, self.cert_host.url(), Message=json.dumps(body))
            return body_of(message), {"x-amz-sns-message-type": "Notification"}
        if self.provider == "mailgun":
            return body_of(mailgun_payload(mailgun_event(kind, email, message_id))), {}
        if self.provider == "postmark":
            return body_of(postmark_record(kind, email, message_id)), {"Authorization": basic()}
        data = body_of([sendgrid_event(kind, email, message_id)])
        return data, self.sendgrid.headers(data)

    def post(self, data: bytes, headers: dict[str, str]):
        return self.client.post(f"/webhooks/{self.provider}", content=data, headers=headers)


@pytest.fixture
def poster(request, sent, cert_host, sns_signer, sendgrid_key) -> Iterator[Poster]:
    with site(sent.settings, cert_host.fetcher()) as client:
        yield Poster(request.param, client, cert_host, sns_signer[0], sendgrid_key)


# Bounces and complaints, as the mailbox records them


@pytest.mark.parametrize("poster", PROVIDERS, indirect=True)
def test_a_signed_bounce_and_complaint_change_the_subscriber_once(poster, sent, engine):
    ann, zoe = sent.message_ids["ann@example.com"], sent.message_ids["zoe@example.org"]
    bounce = poster.request("bounce", "ann@example.com", ann)
    answer = poster.post(*bounce)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcomes"] == {"recorded": 1}
    again = poster.post(*bounce)  # the provider's retry of the same event
    assert again.status_code == 200 and again.json()["outcomes"] == {"duplicate": 1}
    complaint = poster.post(*poster.request("complaint", "zoe@example.org", zoe))
    assert complaint.json()["outcomes"] == {"recorded": 1}
    people, sends, events = state(engine)
    assert people == [
        ("ann@example.com", "bounced", 1),  # BOUNCE_LIMIT=1: one hard bounce, counted once
        ("zoe@example.org", "unsubscribed", 0),
    ]
    assert dict(sends)["ann@example.com"] == "failed"
    assert sorted(events) == [
        ("complaint", poster.provider, "zoe@example.org"),
        ("hard", poster.provider, "ann@example.com"),
    ]


@pytest.mark.parametrize("poster", PROVIDERS, indirect=True)
def test_an_event_about_someone_we_never_sent_to_is_answered_200_and_matches_nothing(
    poster, engine
):
    before = state(engine)[:2]
    answer = poster.post(*poster.request("bounce", "nobody@example.net", "<x@elsewhere.example>"))
    assert answer.status_code == 200 and answer.json()["outcomes"] == {"unmatched": 1}
    assert state(engine)[:2] == before


# Refusals


def _forgeries(poster: Poster, message_id: str):
    """(name, body, headers) of requests that are not provably the provider's."""
    data, headers = poster.request("bounce", "ann@example.com", message_id)
    other_key, old = rsa_key(), now() - dt.timedelta(hours=1)
    if poster.provider == "ses":
        message = json.loads(data)
        body = json.dumps(ses_body("bounce", "ann@example.com", message_id))
        yield "unsigned", body_of({k: v for k, v in message.items() if k != "Signature"}), {}
        yield "altered", body_of(message | {"Message": body.replace("Permanent", "x")}), {}
        url = poster.cert_host.url()
        yield "other key", body_of(signed_sns(other_key, url, Message=body)), {}
        stamp = old.isoformat().replace("+00:00", "Z")
        yield "old", body_of(signed_sns(poster.sns_key, url, Message=body, Timestamp=stamp)), {}
        theirs = "arn:aws:sns:eu-west-1:999999999999:theirs"
        foreign = signed_sns(poster.sns_key, url, Message=body, TopicArn=theirs)
        yield "other topic", body_of(foreign), {}
        elsewhere = "https://evil.example/SimpleNotificationService-test.pem"
        yield "cert elsewhere", body_of(signed_sns(poster.sns_key, elsewhere, Message=body)), {}
    elif poster.provider == "mailgun":
        payload = json.loads(data)
        yield "unsigned", body_of({"event-data": payload["event-data"]}), {}
        event = payload["event-data"]
        yield "other key", body_of(mailgun_payload(event, key="someone-elses-signing-key")), {}
        altered = payload | {"signature": payload["signature"] | {"token": "another"}}
        yield "altered", body_of(altered), {}
        yield "old", body_of(mailgun_payload(event, at=old)), {}
    elif poster.provider == "postmark":
        yield "unsigned", data, {}
        yield "wrong password", data, {"Authorization": basic(POSTMARK_USER, "not-the-password")}
        yield "other scheme", data, {"Authorization": "Bearer " + POSTMARK_PASSWORD}
    else:
        yield "unsigned", data, {}
        yield "altered", data.replace(b"ann@", b"zoe@"), headers
        yield "other key", data, SendgridKey.make().headers(data)
        yield "old", data, poster.sendgrid.headers(data, at=old)


@pytest.mark.parametrize("poster", PROVIDERS, indirect=True)
def test_unsigned_or_forged_requests_are_refused_and_change_nothing(poster, sent, engine, caplog):
    before = state(engine)
    forgeries = list(_forgeries(poster, sent.message_ids["ann@example.com"]))
    with caplog.at_level(logging.WARNING, logger="newsletter.webhooks"):
        for name, data, headers in forgeries:
            answer = poster.post(data, headers)
            expected = 401 if poster.provider == "postmark" else 403
            assert answer.status_code == expected, name
            if poster.provider == "postmark":
                assert answer.headers["www-authenticate"].startswith("Basic")
    assert state(engine) == before
    refusals = [r for r in caplog.records if r.getMessage() == "webhook_refused"]
    assert len(refusals) == 1 and not refusals[0].exc_info  # one line, however many


def test_an_unknown_or_unconfigured_provider_is_404(sent, cert_host):
    off = sent.settings.model_copy(
        update={"ses_topic_arns": "", "postmark_webhook_user": "", "sendgrid_public_key": ""}
    )
    with site(off, cert_host.fetcher()) as client:
        for provider in ["ses", "postmark", "sendgrid", "sparkpost", "..", ""]:
            assert client.post(f"/webhooks/{provider}", content=b"{}").status_code == 404
        assert client.post("/webhooks/mailgun", content=b"{}").status_code == 403  # still on


@pytest.mark.parametrize("poster", ["sendgrid"], indirect=True)
def test_an_oversized_or_malformed_body_is_refused_before_anything(poster, engine):
    before = state(engine)
    huge = b"[" + b" " * MAX_BODY + b"]"
    assert poster.post(huge, poster.sendgrid.headers(huge)).status_code == 413
    chunks = iter([b"[", b" " * MAX_BODY, b"]"])  # no Content-Length: counted as it comes
    streamed = poster.client.post("/webhooks/sendgrid", content=chunks, headers={})
    assert streamed.status_code == 413
    not_json = b"email=ann@example.com&event=bounce"
    assert poster.post(not_json, poster.sendgrid.headers(not_json)).status_code == 400
    assert state(engine) == before


@pytest.mark.parametrize("poster", ["sendgrid"], indirect=True)
def test_a_malformed_event_in_a_batch_is_a_result_of_its_own(poster, sent, engine):
    ann = sent.message_ids["ann@example.com"]
    batch = [
        "not an event",
        sendgrid_event("bounce", "ann@example.com", ann),
        {"event": "bounce", "email": ["not", "an", "address"], "status": {"x": 1}},
        {"event": "delivered", "email": "zoe@example.org"},
        17,
    ]
    data = body_of(batch)
    answer = poster.post(data, poster.sendgrid.headers(data))
    assert answer.status_code == 200
    assert answer.json() == {
        "provider": "sendgrid",
        "events": 5,
        "outcomes": {"unreadable": 2, "recorded": 1, "unmatched": 1, "skipped": 1},
    }
    assert state(engine)[0][0] == ("ann@example.com", "bounced", 1)


# SNS: confirmation, the certificate cache, a host that never answers


def test_a_subscription_confirmation_gets_its_subscribe_url(sent, cert_host, sns_signer, engine):
    before = state(engine)
    subscribe = cert_host.url("/confirm?Action=ConfirmSubscription&Token=tok-123")
    message = signed_sns(
        sns_signer[0],
        cert_host.url(),
        Type="SubscriptionConfirmation",
        Message="You have chosen to subscribe to the topic.",
        SubscribeURL=subscribe,
        Token="tok-123",
    )
    with site(sent.settings, cert_host.fetcher()) as client:
        answer = client.post("/webhooks/ses", content=body_of(message))
        foreign = message | {"SubscribeURL": "https://evil.example/confirm?Token=tok-123"}
        refused = client.post("/webhooks/ses", content=body_of(foreign))
    assert answer.status_code == 200
    assert cert_host.confirmed.count("/confirm?Action=ConfirmSubscription&Token=tok-123") == 1
    assert refused.status_code == 403  # the altered URL breaks the signature: never fetched
    assert state(engine) == before


def test_the_certificate_is_fetched_once_for_many_messages(sent, cert_host, sns_signer, engine):
    fetcher = cert_host.fetcher()
    start = cert_host.hits.get(CERT_PATH, 0)
    with site(sent.settings, fetcher) as client:
        for _ in range(5):
            body = json.dumps(ses_body("bounce", "nobody@example.net", "<a@b.example>"))
            message = signed_sns(sns_signer[0], cert_host.url(), Message=body)
            assert client.post("/webhooks/ses", content=body_of(message)).status_code == 200
    assert cert_host.hits[CERT_PATH] - start == 1 and fetcher.fetches == 1


@pytest.mark.parametrize("path", ["/hang.pem", "/huge.pem", "/missing.pem"])
def test_a_certificate_host_that_fails_is_a_refusal_within_the_timeout(
    sent, cert_host, sns_signer, engine, path
):
    before = state(engine)
    body = json.dumps(ses_body("bounce", "ann@example.com", sent.message_ids["ann@example.com"]))
    message = signed_sns(sns_signer[0], cert_host.url(path), Message=body)
    answers = []
    done = threading.Event()
    fetcher = cert_host.fetcher(timeout=0.5)
    with site(sent.settings, fetcher) as client:

        def post() -> None:
            answers.append(client.post("/webhooks/ses", content=body_of(message)))
            done.set()

        threading.Thread(target=post, daemon=True).start()
        try:
            assert done.wait(20), "the fetch was not bounded by its timeout"
        finally:  # let the hung handler go, and the next test hang anew
            cert_host.release.set()
            cert_host.release = threading.Event()
    assert answers[0].status_code == 503  # may be genuine: SNS sends it again later
    with site(sent.settings, fetcher) as client:  # at once: not fetched again for a while
        assert client.post("/webhooks/ses", content=body_of(message)).status_code == 503
    assert cert_host.hits[path] == 1 and fetcher.fetches == 1
    assert state(engine) == before


def test_the_certificate_host_must_prove_itself_and_be_an_https_sns_host(cert_host):
    untrusting = SnsFetcher(ssl.create_default_context(), host_pattern=LOCAL)  # the system's CAs
    with pytest.raises(SnsUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.certificate(cert_host.url())
    fetcher = cert_host.fetcher()
    for url in [cert_host.url().replace("https:", "http:"), "https://localhost/x.pem"]:
        with pytest.raises(WebhookRefused):
            fetcher.certificate(url)
    assert fetcher.fetches == 0
    assert fetcher.certificate(cert_host.url()).startswith(b"-----BEGIN CERTIFICATE-----")


# Settings


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ses_topic_arns", "arn:aws:sns:eu-west-1:123:short-account"),
        ("mailgun_signing_key", "short"),
        ("postmark_webhook_user", "hooks"),  # without a password
        ("sendgrid_public_key", "bm90IGEga2V5"),
    ],
)
def test_a_malformed_webhook_setting_is_one_line_naming_it(key, value, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(**{key: value})
    expected = "POSTMARK_WEBHOOK_PASSWORD" if key == "postmark_webhook_user" else key.upper()
    assert caught.value.where == "NEWSLETTER_" + expected
