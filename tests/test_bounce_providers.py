"""Provider webhooks checked as each provider signs them, and read into bounce reports.

The tests make their own keys and certificates and sign requests the way SES (SNS),
Mailgun, Postmark and SendGrid do; a forged, altered, replayed or foreign request
is refused, and each provider's bounce and complaint events become the same
`BounceReport`s a DSN does.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.bounces.providers import (
    WebhookRefused,
    mailgun_reports,
    postmark_reports,
    sendgrid_reports,
    ses_reports,
    sns_string_to_sign,
    verify_mailgun,
    verify_postmark,
    verify_sendgrid,
    verify_sns,
)
from newsletter.models import BounceKind

NOW = dt.datetime(2026, 12, 2, 4, 0, tzinfo=dt.UTC)
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"


# SES through SNS


@pytest.fixture(scope="module")
def sns_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


def ses_bounce(bounce_type: str = "Permanent") -> dict:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "Ann@Example.com",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 no such user",
                },
                {"emailAddress": "bob@example.org", "status": "5.1.1"},
            ],
        },
        "mail": {"commonHeaders": {"messageId": "<m1@news.example.org>"}},
    }


def signed_sns(key, body: dict, *, version: str = "2", **changes) -> dict:
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(body),
        "Timestamp": "2026-12-02T03:59:30.000Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        **changes,
    }
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    signature = key.sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def check_sns(message: dict, pem: bytes, **kwargs) -> None:
    fetched = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return pem

    verify_sns(message, fetch_certificate=fetch, topic_arns=[TOPIC], now=NOW, **kwargs)
    assert fetched == [CERT_URL]


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_genuine_ses_bounce_is_accepted_and_read(sns_key, version):
    key, pem = sns_key
    message = signed_sns(key, ses_bounce(), version=version)
    check_sns(message, pem)
    reports = ses_reports(message)
    assert [(r.kind, r.recipients, r.status) for r in reports] == [
        (BounceKind.HARD, ("ann@example.com",), "5.1.1"),
        (BounceKind.HARD, ("bob@example.org",), "5.1.1"),
    ]
    assert reports[0].diagnostic == "smtp; 550 5.1.1 no such user"
    assert reports[0].message_id == "<m1@news.example.org>" and reports[0].reporter == "ses"


def test_the_string_sns_signs_follows_its_documented_order():
    message = {"Type": "Notification", "Message": "m", "MessageId": "i", "Timestamp": "t"}
    message |= {"TopicArn": "a", "Subject": "s", "UnusedField": "x"}
    assert sns_string_to_sign(message) == (
        b"Message\nm\nMessageId\ni\nSubject\ns\nTimestamp\nt\nTopicArn\na\nType\nNotification\n"
    )
    del message["Subject"]  # optional: left out, not signed as empty
    assert b"Subject" not in sns_string_to_sign(message)
    confirm = {"Type": "SubscriptionConfirmation", "Message": "m", "MessageId": "i"}
    confirm |= {"SubscribeURL": "u", "Timestamp": "t", "Token": "k", "TopicArn": "a"}
    assert sns_string_to_sign(confirm).startswith(b"Message\nm\nMessageId\ni\nSubscribeURL\nu\n")


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda m: m | {"Message": m["Message"].replace("Permanent", "Transient")},
            id="altered-message",
        ),
        pytest.param(lambda m: m | {"Subject": "changed"}, id="altered-subject"),
        pytest.param(
            lambda m: m | {"Signature": base64.b64encode(b"x" * 256).decode()},
            id="forged-signature",
        ),
        pytest.param(lambda m: m | {"Signature": "not base64!"}, id="garbage-signature"),
        pytest.param(lambda m: m | {"SignatureVersion": "3"}, id="unknown-version"),
        pytest.param(lambda m: m | {"Type": "Surprise"}, id="unknown-type"),
    ],
)
def test_an_altered_or_forged_sns_message_is_refused(sns_key, forge):
    key, pem = sns_key
    message = forge(signed_sns(key, ses_bounce()))
    with pytest.raises(WebhookRefused):
        verify_sns(message, fetch_certificate=lambda url: pem, now=NOW)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/cert.pem",  # not https
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",  # not an SNS host
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com/cert.txt",  # not a certificate
    ],
)
def test_a_certificate_from_anywhere_but_sns_is_never_fetched(sns_key, url):
    key, pem = sns_key
    message = signed_sns(key, ses_bounce(), SigningCertURL=url)
    fetched = []
    with pytest.raises(WebhookRefused, match="SigningCertURL"):
        verify_sns(message, fetch_certificate=lambda u: fetched.append(u) or pem, now=NOW)
    assert fetched == []


def test_a_genuine_message_of_someone_elses_topic_or_an_old_one_is_refused(sns_key):
    key, pem = sns_key
    foreign = signed_sns(key, ses_bounce(), TopicArn="arn:aws:sns:eu-west-1:999:theirs")
    with pytest.raises(WebhookRefused, match="not ours"):
        check_sns(foreign, pem)
    old = signed_sns(key, ses_bounce(), Timestamp="2026-12-01T03:59:30.000Z")
    with pytest.raises(WebhookRefused, match="too far from now"):
        check_sns(old, pem)


def test_an_expired_certificate_or_another_key_is_refused(sns_key):
    key, pem = sns_key
    later = NOW + dt.timedelta(days=60)
    stale = signed_sns(key, ses_bounce(), Timestamp=later.isoformat())
    with pytest.raises(WebhookRefused, match="validity"):
        verify_sns(stale, fetch_certificate=lambda url: pem, now=later)
    message = signed_sns(key, ses_bounce())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(WebhookRefused, match="does not verify"):
        check_sns(signed_sns(other, ses_bounce()), pem)
    with pytest.raises(WebhookRefused, match="PEM"):
        check_sns(message, b"not a certificate")


def test_ses_transient_bounces_complaints_and_deliveries():
    def read(body):
        return ses_reports({"Message": json.dumps(body)})

    assert {r.kind for r in read(ses_bounce("Transient"))} == {BounceKind.SOFT}
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "cat@example.com"}]},
        "mail": {"commonHeaders": {"messageId": "m2@news.example.org"}},
    }
    [report] = read(complaint)
    assert (report.kind, report.recipients) == (BounceKind.COMPLAINT, ("cat@example.com",))
    assert report.message_id == "<m2@news.example.org>"
    assert read({"notificationType": "Delivery"}) == []
    assert ses_reports({"Message": "not json"}) == [] and ses_reports({}) == []


# Mailgun


MAILGUN_KEY = "key-mailgun-signing-0123456789"


def mailgun_payload(event: dict, *, key: str = MAILGUN_KEY, at: dt.datetime = NOW) -> dict:
    timestamp, token = (
        str(int(at.timestamp())),
        "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
    )
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": digest},
        "event-data": event,
    }


FAILED = {
    "event": "failed",
    "severity": "permanent",
    "recipient": "ann@example.com",
    "reason": "bounce",
    "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "description": "No such user"},
    "message": {"headers": {"message-id": "m3@news.example.org"}},
}


def test_a_signed_mailgun_failure_is_accepted_and_read():
    payload = mailgun_payload(FAILED)
    verify_mailgun(payload, signing_key=MAILGUN_KEY, now=NOW)
    [report] = mailgun_reports(payload)
    assert (report.kind, report.recipients, report.status) == (
        BounceKind.HARD,
        ("ann@example.com",),
        "5.1.1",
    )
    assert report.diagnostic == "No such user" and report.message_id == "<m3@news.example.org>"
    temporary = mailgun_reports(mailgun_payload(FAILED | {"severity": "temporary"}))
    assert [r.kind for r in temporary] == [BounceKind.SOFT]
    complained = mailgun_reports(mailgun_payload({"event": "complained", "recipient": "b@x.org"}))
    assert [(r.kind, r.recipients) for r in complained] == [(BounceKind.COMPLAINT, ("b@x.org",))]
    assert mailgun_reports(mailgun_payload({"event": "delivered", "recipient": "b@x.org"})) == []


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(mailgun_payload(FAILED, key="someone-elses-key"), id="other-key"),
        pytest.param(mailgun_payload(FAILED, at=NOW - dt.timedelta(hours=1)), id="replayed"),
        pytest.param({"event-data": FAILED}, id="unsigned"),
        pytest.param({"signature": "nonsense", "event-data": FAILED}, id="garbage"),
    ],
)
def test_an_unsigned_forged_or_replayed_mailgun_webhook_is_refused(payload):
    with pytest.raises(WebhookRefused):
        verify_mailgun(payload, signing_key=MAILGUN_KEY, now=NOW)


def test_a_mailgun_payload_altered_after_signing_is_refused():
    payload = mailgun_payload(FAILED)
    tampered = copy.deepcopy(payload)
    tampered["signature"]["token"] = "another-token"
    with pytest.raises(WebhookRefused):
        verify_mailgun(tampered, signing_key=MAILGUN_KEY, now=NOW)
    with pytest.raises(WebhookRefused):
        verify_mailgun(payload, signing_key="", now=NOW)  # no key configured: nothing passes


# Postmark


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_postmark_credentials():
    verify_postmark(basic("hooks", "s3cret-pw"), user="hooks", password="s3cret-pw")
    for header in [
        basic("hooks", "wrong"),
        basic("other", "s3cret-pw"),
        "",
        "Basic !!",
        "Bearer x",
    ]:
        with pytest.raises(WebhookRefused):
            verify_postmark(header, user="hooks", password="s3cret-pw")
    with pytest.raises(WebhookRefused, match="configured"):
        verify_postmark(basic("", ""), user="", password="")


def test_postmark_records():
    hard = {"RecordType": "Bounce", "Type": "HardBounce", "Email": "ann@example.com"}
    hard |= {"MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Details": "550 no mailbox"}
    [report] = postmark_reports(hard)
    assert (report.kind, report.recipients, report.diagnostic) == (
        BounceKind.HARD,
        ("ann@example.com",),
        "550 no mailbox",
    )
    assert report.message_id == "<883953f4-6105-42a2-a16a-77a8eac79483>"
    assert [r.kind for r in postmark_reports(hard | {"Type": "SoftBounce"})] == [BounceKind.SOFT]
    assert [r.kind for r in postmark_reports(hard | {"Type": "AutoResponder"})] == [
        BounceKind.AUTO_REPLY
    ]
    spam = postmark_reports({"RecordType": "SpamComplaint", "Email": "ann@example.com"})
    assert [r.kind for r in spam] == [BounceKind.COMPLAINT]
    assert postmark_reports({"RecordType": "Delivery", "Email": "ann@example.com"}) == []


# SendGrid


@pytest.fixture(scope="module")
def sendgrid_key():
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(public).decode()


EVENTS = [
    {
        "email": "ann@example.com",
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 unknown user",
        "smtp-id": "<m4@news.example.org>",
        "sg_event_id": "e1",
    },
    {"email": "bob@example.org", "event": "bounce", "type": "blocked", "status": "4.7.1"},
    {"email": "cat@example.com", "event": "spamreport"},
    {"email": "dan@example.com", "event": "dropped", "reason": "Bounced Address"},
    {"email": "eve@example.com", "event": "delivered"},
    {"email": "fay@example.com", "event": "open"},
    "not an event",
]


def sendgrid_request(key, events=EVENTS, at: dt.datetime = NOW) -> tuple[bytes, str, str]:
    body = json.dumps(events).encode()
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, base64.b64encode(signature).decode(), timestamp


def test_a_signed_sendgrid_batch_is_accepted_and_read(sendgrid_key):
    key, public = sendgrid_key
    body, signature, timestamp = sendgrid_request(key)
    verify_sendgrid(body, signature=signature, timestamp=timestamp, public_key=public, now=NOW)
    reports = sendgrid_reports(json.loads(body))
    assert [(r.kind, r.recipients) for r in reports] == [
        (BounceKind.HARD, ("ann@example.com",)),
        (BounceKind.SOFT, ("bob@example.org",)),
        (BounceKind.COMPLAINT, ("cat@example.com",)),
        (BounceKind.HARD, ("dan@example.com",)),
    ]
    assert reports[0].status == "5.1.1" and reports[0].message_id == "<m4@news.example.org>"
    assert sendgrid_reports({"not": "a list"}) == []


def test_an_altered_forged_or_replayed_sendgrid_batch_is_refused(sendgrid_key):
    key, public = sendgrid_key
    body, signature, timestamp = sendgrid_request(key)
    other = ec.generate_private_key(ec.SECP256R1())
    _, forged, _ = sendgrid_request(other)
    old_body, old_signature, old_timestamp = sendgrid_request(key, at=NOW - dt.timedelta(hours=1))
    attempts = [
        (body.replace(b"bounce", b"delivered", 1), signature, timestamp, public),  # altered
        (body, forged, timestamp, public),  # someone else's key
        (body, signature, str(int(timestamp) + 1), public),  # another timestamp
        (old_body, old_signature, old_timestamp, public),  # replayed
        (body, "", timestamp, public),  # unsigned
        (body, signature, timestamp, base64.b64encode(b"junk").decode()),  # a bad key setting
    ]
    for data, sig, stamp, key_setting in attempts:
        with pytest.raises(WebhookRefused):
            verify_sendgrid(data, signature=sig, timestamp=stamp, public_key=key_setting, now=NOW)
