"""The doctor's DKIM check (RFC 6376, RFC 8463): for each configured key (DKIM_PRIVATE_KEY,
and DKIM_ED25519_KEY when set), the TXT record at <selector>._domainkey.<DKIM_DOMAIN>
publishes its public half: there, one, not revoked, the same key type and the same key.
Each problem's fix is the exact record to publish (`dkim.public_record`, the one the
signer's key makes). The keys themselves were checked when the settings loaded.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.config import Finding, Settings, Severity
from newsletter.dkim import public_record, read_private_key
from newsletter.doctor.dns_domains import MailDomains, SigningKey
from newsletter.doctor.dns_lookup import Lookup
from newsletter.doctor.dns_records import PublicKey, key_type, same_key, tags
from newsletter.errors import ConfigError
from newsletter.hygiene import one_line


def check_dkim(lookup: Lookup, domains: MailDomains, settings: Settings) -> list[Finding]:
    if not domains.signed:
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
    findings = []
    for signing in domains.dkim_keys:
        try:  # read once per process (cached); fails only if the file changed since
            key = read_private_key(signing.path, signing.kind, signing.setting).public_key()
        except ConfigError as exc:
            findings.append(Finding(Severity.ERROR, signing.setting, exc.message, exc.hint))
            continue
        findings.append(_dkim_record(lookup, domains, signing, key))
    return findings


def _dkim_record(
    lookup: Lookup, domains: MailDomains, signing: SigningKey, key: PublicKey
) -> Finding:
    name = f"{signing.selector}._domainkey.{domains.dkim_domain}"
    subject = f"DKIM {name}"
    expected = public_record(key)
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
            f"k={kind}, but the configured key {signing.path} is {ours}: every signature fails",
            f"replace it: {publish}",
        )
    try:
        same = same_key(found["p"], key)
    except ValueError as exc:
        return error(f"malformed: {exc}", f"replace it: {publish}")
    if not same:
        return error(
            f"publishes a different key from {signing.path}: every signature fails",
            f"replace it (or set the key it belongs to): {publish}",
        )
    bits = f", {key.key_size} bits" if isinstance(key, rsa.RSAPublicKey) else ""
    return Finding(Severity.OK, subject, f"publishes the configured key ({ours}{bits})")
