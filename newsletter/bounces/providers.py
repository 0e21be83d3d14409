"""Bounces and complaints reported by sending providers' webhooks, checked and read.

Each provider proves a request is its own in its own way, and each check here is
the provider's documented one:

* Amazon SES, through SNS: the message is signed with the key of an X.509
  certificate that SNS publishes at `SigningCertURL`; the URL must be https on
  an SNS host (`sns.<region>.amazonaws.com`), the certificate is fetched over
  verified TLS, must be in its validity period, and must verify the signature of
  the fields SNS names, in SNS's order (SignatureVersion 1: SHA1, 2: SHA256).
* Mailgun: `signature` is HMAC-SHA256 of `timestamp` + `token` under the
  webhook signing key.
* Postmark: HTTP basic auth in the webhook URL (a user and password we choose).
* SendGrid (Twilio) signed event webhook: an ECDSA P-256 / SHA-256 signature of
  the timestamp header followed by the raw body, with the public key SendGrid
  shows in its settings.

Every check also refuses a timestamp more than `MAX_SKEW` from now (a replayed
old request), and all secrets are compared in constant time. A refused request
raises `WebhookRefused`; nothing is read from it.

Reading turns each provider's events into `BounceReport`s, the same values a
DSN at the bounce address becomes, so both are recorded the same way. Events
that are neither a bounce nor a complaint (deliveries, opens) give no report.
All functions here are pure: the certificate is fetched by a callable the
caller passes (`fetch_certificate`), so the web layer owns the network.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from newsletter.addresses import validate_email
from newsletter.bounces import BounceReport
from newsletter.errors import InputError, NewsletterError
from newsletter.hygiene import one_line
from newsletter.models import BounceKind

MAX_SKEW = dt.timedelta(minutes=15)  # SNS retries for a while; Mailgun and SendGrid say 5+ min
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_MAX_TEXT = 500


class WebhookRefused(NewsletterError):
    """A webhook request that is not provably the provider's: answered 401/403, not read."""


# Amazon SES through SNS


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """The bytes SNS signed: `name\\nvalue\\n` for each field of the message's type, in order.

    A Notification's Subject is included only when present; confirmations sign their
    SubscribeURL and Token instead.
    """
    kind = message.get("Type")
    if kind == "Notification":
        fields = _NOTIFICATION_FIELDS
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        fields = _CONFIRMATION_FIELDS
    else:
        raise WebhookRefused(f"an SNS message of unknown type {kind!r}", where="Type")
    parts = []
    for name in fields:
        if name not in message or message[name] is None:
            if name == "Subject":
                continue
            raise WebhookRefused(f"the SNS message lacks {name}", where=name)
        parts.append(f"{name}\n{message[name]}\n")
    return "".join(parts).encode("utf-8")


def verify_sns(
    message: dict[str, Any],
    *,
    fetch_certificate: Callable[[str], bytes],
    topic_arns: Iterable[str] = (),
    now: dt.datetime | None = None,
    host_pattern: re.Pattern[str] = SNS_HOST,
) -> None:
    """Refuse (`WebhookRefused`) an SNS message that SNS did not sign, or not for us.

    `topic_arns`: the topics we subscribed to (empty: any); a message from another
    topic is refused even when genuinely signed (anyone can point an SNS topic of
    theirs at our URL). `host_pattern` is the SNS host rule (tests give their own).
    """
    version = str(message.get("SignatureVersion", ""))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)  # SNS versions 1 and 2
    if algorithm is None:
        raise WebhookRefused(f"unknown SNS SignatureVersion {version!r}", where="SignatureVersion")
    allowed = tuple(topic_arns)
    if allowed and message.get("TopicArn") not in allowed:
        raise WebhookRefused(
            f"a message from SNS topic {one_line(str(message.get('TopicArn')))!r}, not ours",
            where="TopicArn",
            hint="add the topic to NEWSLETTER_SES_TOPIC_ARNS if it is yours",
        )
    _check_time(_parse_time(str(message.get("Timestamp", ""))), now)
    url = str(message.get("SigningCertURL", ""))
    parts = urlsplit(url)
    if parts.scheme != "https" or not host_pattern.fullmatch(parts.hostname or ""):
        raise WebhookRefused(f"SigningCertURL {url[:200]!r} is not an SNS https URL")
    if not parts.path.endswith(".pem"):
        raise WebhookRefused(f"SigningCertURL {url[:200]!r} is not a certificate")
    try:
        certificate = x509.load_pem_x509_certificate(fetch_certificate(url))
    except ValueError:
        raise WebhookRefused(f"{url[:200]} does not hold a PEM certificate") from None
    moment = now or dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise WebhookRefused("the SNS signing certificate is outside its validity period")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused("the SNS signing certificate does not hold an RSA key")
    signature = _b64(str(message.get("Signature", "")), "Signature")
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise WebhookRefused("the SNS signature does not verify", where="Signature") from None


def ses_reports(message: dict[str, Any]) -> list[BounceReport]:
    """The bounces and complaints in a (verified) SNS Notification from SES."""
    try:
        body = json.loads(str(message.get("Message", "")))
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    kind = body.get("notificationType") or body.get("eventType")
    mail = body.get("mail") if isinstance(body.get("mail"), dict) else {}
    message_id = _message_id(_header(mail.get("commonHeaders"), "messageId"))
    if kind == "Bounce":
        bounce = _dict(body.get("bounce"))
        hard = bounce.get("bounceType") == "Permanent"
        return [
            BounceReport(
                kind=BounceKind.HARD if hard else BounceKind.SOFT,
                recipients=_addresses([r.get("emailAddress")]),
                status=_status(r.get("status")),
                diagnostic=_text(r.get("diagnosticCode")),
                message_id=message_id,
                reporter="ses",
                detail=_text(f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"),
            )
            for r in _dicts(bounce.get("bouncedRecipients"))
        ]
    if kind == "Complaint":
        complaint = _dict(body.get("complaint"))
        recipients = [r.get("emailAddress") for r in _dicts(complaint.get("complainedRecipients"))]
        return [
            BounceReport(
                kind=BounceKind.COMPLAINT,
                recipients=_addresses(recipients),
                message_id=message_id,
                reporter="ses",
                detail=_text(complaint.get("complaintFeedbackType") or "complaint"),
            )
        ]
    return []


# Mailgun


def verify_mailgun(
    payload: dict[str, Any], *, signing_key: str, now: dt.datetime | None = None
) -> None:
    """Refuse a Mailgun webhook whose `signature` block is not the signing key's HMAC."""
    block = _dict(payload.get("signature"))
    timestamp, token = str(block.get("timestamp", "")), str(block.get("token", ""))
    given = str(block.get("signature", ""))
    if not (signing_key and timestamp.isdigit() and token and given):
        raise WebhookRefused("the Mailgun webhook carries no signature", where="signature")
    _check_time(dt.datetime.fromtimestamp(int(timestamp), dt.UTC), now)
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), given.lower()):
        raise WebhookRefused("the Mailgun signature does not verify", where="signature")


def mailgun_reports(payload: dict[str, Any]) -> list[BounceReport]:
    """A failed (permanent or temporary) or complained event, as a report."""
    data = _dict(payload.get("event-data"))
    event = data.get("event")
    status = _dict(data.get("delivery-status"))
    headers = _dict(_dict(data.get("message")).get("headers"))
    common = {
        "recipients": _addresses([data.get("recipient")]),
        "message_id": _message_id(headers.get("message-id")),
        "reporter": "mailgun",
    }
    if event == "failed":
        permanent = data.get("severity") == "permanent"
        return [
            BounceReport(
                kind=BounceKind.HARD if permanent else BounceKind.SOFT,
                status=_status(status.get("enhanced-code") or status.get("code")),
                diagnostic=_text(status.get("description") or status.get("message")),
                detail=_text(data.get("reason") or ""),
                **common,
            )
        ]
    if event == "complained":
        return [BounceReport(kind=BounceKind.COMPLAINT, detail="complained", **common)]
    return []


# Postmark


def verify_postmark(authorization: str, *, user: str, password: str) -> None:
    """Refuse a Postmark webhook without the basic-auth credentials set in its URL."""
    if not (user and password):
        raise WebhookRefused("no Postmark webhook credentials are configured")
    scheme, _, encoded = authorization.partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (ValueError, binascii.Error):
        given = b""
    expected = f"{user}:{password}".encode()
    if scheme.lower() != "basic" or not hmac.compare_digest(given, expected):
        raise WebhookRefused("the Postmark webhook's credentials are wrong", where="Authorization")


# Postmark's bounce Types: the transient ones count as soft; the rest of the non-bounces
# (auto-replies, tests, subscription notices) are no bounce at all.
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked"}
_POSTMARK_IGNORED = {
    "AutoResponder",
    "OpenRelayTest",
    "Unknown",
    "Subscribe",
    "ChallengeVerification",
}


def postmark_reports(payload: dict[str, Any]) -> list[BounceReport]:
    """A Bounce (hard or soft by its Type) or SpamComplaint record, as a report."""
    record = payload.get("RecordType")
    common = {
        "recipients": _addresses([payload.get("Email")]),
        "message_id": _message_id(payload.get("MessageID")),
        "reporter": "postmark",
    }
    if record == "SpamComplaint":
        return [BounceReport(kind=BounceKind.COMPLAINT, detail="SpamComplaint", **common)]
    if record != "Bounce":
        return []
    kind_name = str(payload.get("Type", ""))
    if kind_name in _POSTMARK_IGNORED:
        kind = BounceKind.AUTO_REPLY if kind_name == "AutoResponder" else BounceKind.UNKNOWN
    elif kind_name in _POSTMARK_SOFT:
        kind = BounceKind.SOFT
    else:
        kind = BounceKind.HARD
    return [
        BounceReport(
            kind=kind,
            diagnostic=_text(payload.get("Details") or payload.get("Description")),
            detail=_text(kind_name),
            **common,
        )
    ]


# SendGrid


def verify_sendgrid(
    body: bytes,
    *,
    signature: str,
    timestamp: str,
    public_key: str,
    now: dt.datetime | None = None,
) -> None:
    """Refuse a SendGrid event webhook whose ECDSA signature of timestamp + body fails."""
    if not (signature and timestamp.isdigit() and public_key):
        raise WebhookRefused("the SendGrid webhook carries no signature")
    _check_time(dt.datetime.fromtimestamp(int(timestamp), dt.UTC), now)
    try:
        key = serialization.load_der_public_key(_b64(public_key, "public key"))
    except ValueError:
        raise WebhookRefused("NEWSLETTER_SENDGRID_PUBLIC_KEY is not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookRefused("NEWSLETTER_SENDGRID_PUBLIC_KEY is not an ECDSA key")
    try:
        key.verify(
            _b64(signature, "signature"), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise WebhookRefused("the SendGrid signature does not verify") from None


def sendgrid_reports(events: Any) -> list[BounceReport]:
    """The bounce, blocked, dropped-as-bounced and spamreport events of a batch, as reports."""
    reports = []
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, dict):
            continue
        name, kind = event.get("event"), None
        if name == "bounce":
            kind = BounceKind.SOFT if event.get("type") == "blocked" else BounceKind.HARD
        elif name == "spamreport":
            kind = BounceKind.COMPLAINT
        elif name == "dropped" and "Bounced Address" in str(event.get("reason", "")):
            kind = BounceKind.HARD
        if kind is None:
            continue
        reports.append(
            BounceReport(
                kind=kind,
                recipients=_addresses([event.get("email")]),
                status=_status(event.get("status")),
                diagnostic=_text(event.get("reason")),
                message_id=_message_id(event.get("smtp-id")),
                reporter="sendgrid",
                detail=_text(event.get("sg_event_id") or name),
            )
        )
    return reports


# Shared


def _check_time(when: dt.datetime, now: dt.datetime | None) -> None:
    moment = now or dt.datetime.now(dt.UTC)
    if abs(moment - when) > MAX_SKEW:
        raise WebhookRefused(
            f"the request was signed at {when.isoformat()}, too far from now (a replay?)",
            where="timestamp",
            hint="check this machine's clock",
        )


def _parse_time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRefused(f"timestamp {value[:40]!r} is not a time", where="Timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise WebhookRefused(f"the {what} is not base64") from None


def _addresses(values: Iterable[Any]) -> tuple[str, ...]:
    found = []
    for value in values:
        text = str(value or "").strip().strip("<>")
        try:
            found.append(validate_email(text).lower())
        except InputError:
            continue
    return tuple(found)


def _status(value: Any) -> str:
    text = str(value or "").strip()
    return text if re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", text) else ""


def _message_id(value: Any) -> str:
    text = one_line(str(value or ""))[:_MAX_TEXT].strip()
    if not text:
        return ""
    return text if text.startswith("<") else f"<{text}>"


def _text(value: Any) -> str:
    return one_line(str(value or ""))[:_MAX_TEXT]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _header(headers: Any, name: str) -> Any:
    return _dict(headers).get(name)
