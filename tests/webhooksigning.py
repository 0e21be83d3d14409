"""Requests signed the way each provider signs its webhooks, with keys the tests make.

SNS: an RSA key and a certificate for it (SignatureVersion 1 or 2); Mailgun: an
HMAC key; Postmark: basic-auth credentials; SendGrid: an ECDSA P-256 key. Also a
small certificate authority for a local HTTPS server (the SNS certificate host).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.bounces.providers import sns_string_to_sign

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
POSTMARK_USER, POSTMARK_PASSWORD = "hooks", "postmark-webhook-pw-0123"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: rsa.RSAPrivateKey, common: str = "sns.amazonaws.com", *, ca: bool = False):
    at = now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - dt.timedelta(days=30))
        .not_valid_after(at + dt.timedelta(days=30))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    return builder.sign(key, hashes.SHA256())


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def server_certificate(ca_key, ca_certificate, address: str = "127.0.0.1"):
    """(key, certificate) of a TLS server at `address`, issued by the test CA."""
    key = rsa_key()
    at = now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(address))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - dt.timedelta(days=1))
        .not_valid_after(at + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


# SES through SNS


def ses_body(kind: str, email: str, message_id: str) -> dict:
    """An SES event notification: a permanent bounce, or a complaint, about `email`."""
    mail = {"source": "bounces@news.example.org", "commonHeaders": {"messageId": message_id}}
    if kind == "complaint":
        return {
            "notificationType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": email}],
                "complaintFeedbackType": "abuse",
            },
            "mail": mail,
        }
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": email, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1"}
            ],
        },
        "mail": mail,
    }


def signed_sns(key, cert_url: str, *, version: str = "2", **fields) -> dict:
    """An SNS message (a Notification unless `Type` says otherwise), signed with `key`."""
    message = {
        "Type": "Notification",
        "MessageId": secrets.token_hex(16),
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Timestamp": now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        **fields,
    }
    if message["Type"] != "Notification":
        message.pop("Subject", None)
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    signature = key.sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


# Mailgun


def mailgun_payload(event: dict, *, key: str = MAILGUN_KEY, at: dt.datetime | None = None) -> dict:
    timestamp, token = str(int((at or now()).timestamp())), secrets.token_hex(25)
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": digest},
        "event-data": event,
    }


def mailgun_event(kind: str, email: str, message_id: str) -> dict:
    event = {
        "id": secrets.token_urlsafe(16),
        "recipient": email,
        "message": {"headers": {"message-id": message_id.strip("<>")}},
    }
    if kind == "complaint":
        return event | {"event": "complained"}
    return event | {
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "description": "No such user"},
    }


# Postmark


def basic(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def postmark_record(kind: str, email: str, message_id: str) -> dict:
    """As Postmark posts it: `MessageID` is Postmark's own id for the message, never ours
    (`message_id` is unused: the report is matched by the recipient alone)."""
    own = str(uuid.UUID(int=secrets.randbits(128)))
    record = {"ID": secrets.randbelow(10**9), "Email": email, "MessageID": own}
    if kind == "complaint":
        return record | {"RecordType": "SpamComplaint", "Type": "SpamComplaint"}
    return record | {"RecordType": "Bounce", "Type": "HardBounce", "Details": "550 no mailbox"}


# SendGrid


@dataclass(frozen=True)
class SendgridKey:
    key: ec.EllipticCurvePrivateKey
    public: str  # base64 DER, as SendGrid shows it

    @classmethod
    def make(cls) -> SendgridKey:
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, base64.b64encode(public).decode())

    def headers(self, body: bytes, at: dt.datetime | None = None) -> dict[str, str]:
        timestamp = str(int((at or now()).timestamp()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


def sendgrid_event(kind: str, email: str, message_id: str) -> dict:
    event = {"email": email, "smtp-id": message_id, "sg_event_id": secrets.token_urlsafe(16)}
    if kind == "complaint":
        return event | {"event": "spamreport"}
    return event | {"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1"}


def body_of(value: object) -> bytes:
    return json.dumps(value).encode()
