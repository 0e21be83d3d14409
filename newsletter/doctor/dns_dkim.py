"""The doctor's DKIM check (RFC 6376, RFC 8463): the TXT record at
<DKIM_SELECTOR>._domainkey.<DKIM_DOMAIN> publishes the public half of DKIM_PRIVATE_KEY:
there, one, not revoked, the same key type and the same key. Each problem's fix is the
exact record to publish.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.config import Finding, Settings, Severity
from newsletter.doctor.dns_domains import MailDomains
from newsletter.doctor.dns_lookup import Lookup
from newsletter.doctor.dns_records import (
    PublicKey,
    dkim_public_key,
    dkim_record,
    key_type,
    same_key,
    tags,
)
from newsletter.hygiene import one_line

#: RFC 8301: verifiers ignore RSA signatures made with a smaller key.
MIN_RSA_BITS = 1024


def check_dkim(lookup: Lookup, domains: MailDomains, settings: Settings) -> list[Finding]:
    path = domains.dkim_key
    if path is None:
        return [
            Finding(
                Severity.WARNING,
                "DKIM",
                "no NEWSLETTER_DKIM_PRIVATE_KEY: mail goes out unsigned, and Gmail, Yahoo and "
                "Outlook.com want bulk mail signed",
                "make a key (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048) and "
                "set NEWSLETTER_DKIM_PRIVATE_KEY and NEWSLETTER_DKIM_SELECTOR",
            )
        ]
    try:
        key = dkim_public_key(path)
    except OSError as exc:
        return [Finding(Severity.ERROR, str(path), f"cannot be read: {exc.strerror or exc}",
                        "fix NEWSLETTER_DKIM_PRIVATE_KEY")]  # fmt: skip
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return [
            Finding(
                Severity.ERROR,
                str(path),
                f"is not an unencrypted PEM private key: {one_line(str(exc))}",
                "point NEWSLETTER_DKIM_PRIVATE_KEY at the PEM file of an RSA or Ed25519 key",
            )
        ]
    findings: list[Finding] = []
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        findings.append(
            Finding(
                Severity.ERROR,
                str(path),
                f"an RSA key of {key.key_size} bits: receivers ignore signatures made with "
                f"fewer than {MIN_RSA_BITS} (RFC 8301)",
                "make a 2048-bit key",
            )
        )
    if not domains.dkim_selector:
        findings.append(
            Finding(
                Severity.ERROR,
                "NEWSLETTER_DKIM_SELECTOR",
                "is not set: receivers find the public key at <selector>._domainkey."
                f"{domains.dkim_domain}",
                f'set it (e.g. news1), then publish a TXT record there: "{dkim_record(key)}"',
            )
        )
        return findings
    findings.append(_dkim_record(lookup, domains, key))
    return findings


def _dkim_record(lookup: Lookup, domains: MailDomains, key: PublicKey) -> Finding:
    name = f"{domains.dkim_selector}._domainkey.{domains.dkim_domain}"
    subject = f"DKIM {name}"
    expected = dkim_record(key)
    publish = f'publish one TXT record at {name}: "{expected}"'
    records = lookup.txt(name)

    def error(message: str, fix: str = publish) -> Finding:
        return Finding(Severity.ERROR, subject, message, fix)

    if not records:
        return error("no record: receivers cannot verify our signatures")
    if len(records) > 1:
        return error(f"{len(records)} TXT records: verifiers may read either", f"keep one: "
                     f'"{expected}"')  # fmt: skip
    record = one_line(records[0])
    try:
        found = tags(record)
    except ValueError as exc:
        return error(f"malformed: {exc}", f"replace it: {publish}")
    if found.get("v", "DKIM1") != "DKIM1":
        return error(f"v={found['v']}, not DKIM1: verifiers ignore it", f"replace it: {publish}")
    if "p" not in found:
        return error("has no p= (the public key)", f"replace it: {publish}")
    if not found["p"]:
        return error("p= is empty: the key is revoked (RFC 6376 §3.6.1), so every signature "
                     "fails", f"if the configured key is the new one, {publish}")  # fmt: skip
    kind, ours = found.get("k", "rsa").lower(), key_type(key)
    if kind != ours:
        return error(
            f"k={kind}, but the configured key {domains.dkim_key} is {ours}: every signature fails",
            f"replace it: {publish}",
        )
    try:
        same = same_key(found["p"], key)
    except ValueError as exc:
        return error(f"malformed: {exc}", f"replace it: {publish}")
    if not same:
        return error(
            f"publishes a different key from {domains.dkim_key}: every signature fails",
            f"replace it (or set the key it belongs to): {publish}",
        )
    bits = f", {key.key_size} bits" if isinstance(key, rsa.RSAPublicKey) else ""
    return Finding(Severity.OK, subject, f"publishes the configured key ({ours}{bits})")
