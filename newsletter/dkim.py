"""DKIM signatures (RFC 6376) on a finished message's bytes: relaxed/relaxed, RSA and Ed25519.

Why by hand and not dkimpy: dkimpy signs RSA in pure Python (its own modular
exponentiation) and parses the whole message on every call; on a 66 KB edition it signs
about a sixth as many messages a second as this module (`python -m bench.dkim_speed`).
Here the private key operation is OpenSSL's (`cryptography`), the key is loaded once per
process (`read_private_key`), and per message there are only the steps the RFC requires:
split the header block off (a `find`, no MIME parse), canonicalize the few signed header
lines, canonicalize and hash the body, sign. The send loop builds one `Dkim` per send
and calls `sign` on each recipient's bytes as `message.assemble_message` made them from
pre-encoded pieces. The RSA-2048 private-key operation is nearly all of the cost.

What is signed (`SIGNED_HEADERS`): From, To, Subject, Date, Message-ID, the list headers
RFC 8058 §4 requires to be covered (List-Unsubscribe, List-Unsubscribe-Post), List-Id,
Feedback-ID (Gmail counts complaints by it only when it is signed), CFBL-Address (RFC
9477 §3.1 requires it), and the MIME headers. Every one of them is named once more than
it occurs ("over-signing", RFC 6376 §8.15): a verifier then takes the extra name as an
absent header, so anyone who adds a second From, Subject or List-Unsubscribe (a forged
unsubscribe target, or a second sender shown by some clients) breaks the signature.
Headers we never write (Reply-To, Cc, Sender, ...) are named once for the same reason.
Nothing a relay legitimately adds (Received, Return-Path, Authentication-Results) is in
the list, so relays do not break it.

The signature header is folded within 78 columns; its `b=` tag starts a line of its own,
so the bytes signed (the header with an empty `b=`, RFC 6376 §3.7) are a prefix of the
bytes sent. Messages must have CRLF line ends (as `assemble_message` makes them); bare
LF is turned into CRLF first, since that is what the relay will send.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from newsletter.errors import ConfigError
from newsletter.headers import DOMAIN_RE, MAX_LINE

if TYPE_CHECKING:
    from newsletter.config import Settings

__all__ = [
    "SIGNED_HEADERS",
    "Dkim",
    "DkimKey",
    "dkim_for",
    "public_record",
    "read_private_key",
    "relaxed_body",
    "relaxed_header",
]

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

#: Signed, each named once more than it occurs (see the module docstring).
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "cfbl-address",
    "precedence",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "reply-to",
    "cc",
    "sender",
)

MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must refuse smaller keys (2048 is advised)

_KEYGEN = {
    "rsa": "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim-rsa.pem",
    "ed25519": "openssl genpkey -algorithm ed25519 -out dkim-ed25519.pem",
}
_SELECTOR_RE = DOMAIN_RE  # a selector is a dot-separated sub-domain (RFC 6376 §3.1)
_WSP_ANY = re.compile(rb"[ \t]+")
_BARE_LF = re.compile(rb"(?<!\r)\n")


def relaxed_header(field: bytes) -> bytes:
    """One header field (name, colon, value; folds included, no final CRLF) in the relaxed
    form of RFC 6376 §3.4.2: name lower-cased, unfolded, whitespace runs made one space,
    none around the colon or at the end; CRLF-terminated."""
    name, _, value = field.partition(b":")
    value = _WSP_ANY.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """The body in the relaxed form of RFC 6376 §3.4.4 (CRLF line ends expected).

    Whitespace runs become one space, whitespace at line ends goes, empty lines at the
    end go, and a non-empty body ends with one CRLF. Done with `bytes.replace` (C) and
    no regex: tabs become spaces, then each pass halves every run of spaces, so a
    66 KB body costs a few scans (a regex `sub` took ten times as long).
    """
    if not body:
        return b""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    while b"  " in body:
        body = body.replace(b"  ", b" ")
    body = body.replace(b" \r\n", b"\r\n").rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


@dataclass(frozen=True)
class DkimKey:
    """One signing identity: the key, and where its public half is published
    (`<selector>._domainkey.<domain>`, TXT `public_record(key)`)."""

    selector: str
    domain: str
    private_key: PrivateKey

    @property
    def algorithm(self) -> str:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return "ed25519-sha256"  # RFC 8463
        return "rsa-sha256"

    def sign(self, data: bytes) -> bytes:
        """The signature of the canonicalized header data (RFC 6376 §3.7; RFC 8463 §3:
        Ed25519 signs the SHA-256 hash of it)."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(hashlib.sha256(data).digest())
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


class Dkim:
    """The signer of one send: its keys loaded, `sign(message) -> message` per recipient.

    With no keys it signs nothing (`sign` returns the message as it is), so callers need
    no branch: `dkim_for(settings)` gives an empty one when no key is configured.
    """

    def __init__(self, keys: Sequence[DkimKey] = (), *, headers: Sequence[str] = SIGNED_HEADERS):
        self.keys = tuple(keys)
        self.headers = tuple(name.lower() for name in headers)
        for key in self.keys:
            for value, what in ((key.selector, "selector"), (key.domain, "domain")):
                if not _SELECTOR_RE.fullmatch(value):
                    raise ConfigError(
                        f"the DKIM {what} {value!r} is not a DNS name",
                        where="NEWSLETTER_DKIM_" + what.upper(),
                        hint="use letters, digits, '-' and '.'",
                    )

    def __bool__(self) -> bool:
        return bool(self.keys)

    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """`message` with a DKIM-Signature header (one per key) put in front of it.

        `timestamp` is the `t=` tag (default: now); golden tests fix it, and since RSA
        PKCS#1 v1.5 and Ed25519 signatures are deterministic the bytes are then stable.
        """
        if not self.keys:
            return message
        if message.count(b"\n") != message.count(b"\r\n"):
            message = _BARE_LF.sub(b"\r\n", message)
        end = message.find(b"\r\n\r\n")
        head, body = (message, b"") if end < 0 else (message[: end + 2], message[end + 4 :])
        names, signed = self._signed_headers(head)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
        when = int(time.time()) if timestamp is None else timestamp
        lines = [self._signature_header(key, names, signed, body_hash, when) for key in self.keys]
        return b"".join(lines) + message

    def _signed_headers(self, head: bytes) -> tuple[list[str], bytes]:
        """The `h=` names and the canonicalized fields they pick (RFC 6376 §5.4.2: the
        last instance first), each name once more than it occurs."""
        fields: dict[str, list[bytes]] = {}
        current: list[bytes] = []
        for line in [*head.split(b"\r\n"), b""]:  # the empty line ends the last field
            if line[:1] in (b" ", b"\t") and current:
                current.append(line)
                continue
            if current:
                field = b"\r\n".join(current)
                name = field.split(b":", 1)[0].strip().lower().decode("ascii", "replace")
                fields.setdefault(name, []).append(field)
            current = [line] if line else []
        names: list[str] = []
        canonical: list[bytes] = []
        for name in self.headers:
            found = fields.get(name, [])
            for field in reversed(found):
                names.append(name)
                canonical.append(relaxed_header(field))
            names.append(name)  # the one more: an added instance breaks the signature
        return names, b"".join(canonical)

    @staticmethod
    def _signature_header(
        key: DkimKey, names: list[str], signed: bytes, body_hash: str, when: int
    ) -> bytes:
        tags = [
            "v=1;",
            f"a={key.algorithm};",
            "c=relaxed/relaxed;",
            f"d={key.domain};",
            f"s={key.selector};",
            f"t={when};",
        ]
        head_names = ["h=" + names[0]] + names[1:]
        pieces = [(tag, " ") for tag in tags]
        pieces += [
            (name + (":" if n < len(head_names) - 1 else ";"), " " if n == 0 else "")
            for n, name in enumerate(head_names)
        ]
        pieces.append((f"bh={body_hash};", " "))
        prefix = _fold("DKIM-Signature:", pieces) + "\r\n b="
        data = signed + relaxed_header(prefix.encode("ascii"))[:-2]
        signature = base64.b64encode(key.sign(data)).decode("ascii")
        first = MAX_LINE - len(" b=")
        rest = [signature[i : i + MAX_LINE - 1] for i in range(first, len(signature), MAX_LINE - 1)]
        return (prefix + "\r\n ".join([signature[:first], *rest]) + "\r\n").encode("ascii")


def _fold(head: str, pieces: list[tuple[str, str]]) -> str:
    """`head` and the pieces (text, separator before it), folded (CRLF SP) within 78."""
    lines = [head]
    for text, separator in pieces:
        if len(lines[-1]) + len(separator) + len(text) <= MAX_LINE:
            lines[-1] += separator + text
        else:
            lines.append(" " + text)
    return "\r\n".join(lines)


@lru_cache(maxsize=8)
def read_private_key(path: Path, kind: str, setting: str) -> PrivateKey:
    """The PEM private key at `path`, of `kind` ("rsa" or "ed25519"): read once per process.

    A missing, unreadable, encrypted or wrong-kind file, or an RSA key under 1024 bits,
    is a ConfigError naming `setting` and how to make a good key.
    """
    fix = f"make one with `{_KEYGEN[kind]}` and set {setting} to its path"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"the DKIM key {str(path)!r} cannot be read ({exc.strerror or exc})",
            where=setting,
            hint=fix,
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # cryptography says TypeError for an encrypted key read without a password; its
        # ValueError for bad data also mentions encryption, so the words cannot tell.
        reason = "it is encrypted" if isinstance(exc, TypeError) else "it is not a PEM key"
        raise ConfigError(
            f"the DKIM key {str(path)!r} cannot be used: {reason}",
            where=setting,
            hint=fix + " (unencrypted PEM)",
        ) from None
    wanted = rsa.RSAPrivateKey if kind == "rsa" else ed25519.Ed25519PrivateKey
    if not isinstance(key, wanted):
        raise ConfigError(
            f"the DKIM key {str(path)!r} is not an {kind.upper()} key", where=setting, hint=fix
        )
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise ConfigError(
            f"the DKIM key {str(path)!r} has {key.key_size} bits; receivers refuse keys "
            f"under {MIN_RSA_BITS} (RFC 8301)",
            where=setting,
            hint=fix,
        )
    return key


def dkim_for(settings: Settings) -> Dkim:
    """The signer the settings describe: RSA (DKIM_PRIVATE_KEY), plus Ed25519
    (DKIM_ED25519_KEY) when set; empty (signs nothing) when no key is set."""
    domain = settings.dkim_signing_domain
    keys: list[DkimKey] = []
    if settings.dkim_private_key is not None:
        key = read_private_key(settings.dkim_private_key, "rsa", "NEWSLETTER_DKIM_PRIVATE_KEY")
        keys.append(DkimKey(settings.dkim_selector, domain, key))
    if settings.dkim_ed25519_key is not None:
        key = read_private_key(settings.dkim_ed25519_key, "ed25519", "NEWSLETTER_DKIM_ED25519_KEY")
        keys.append(DkimKey(settings.dkim_ed25519_selector, domain, key))
    return Dkim(keys)


def public_record(key: PrivateKey | PublicKey) -> str:
    """The TXT record to publish at `<selector>._domainkey.<domain>` for `key`:
    `v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo>` (RFC 6376 §3.6.1), or
    `v=DKIM1; k=ed25519; p=<base64 of the raw 32 bytes>` (RFC 8463 §4)."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
