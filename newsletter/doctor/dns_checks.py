"""The doctor's DNS checks: what receivers look up before they trust our mail.

    SPF    a `v=spf1` TXT record at the bounce domain (the envelope sender's, what SPF
           checks) and at the From domain: one, sane, not `+all`, and whether it passes
           the relay's address when its ip4/ip6 terms decide that
    DKIM   the TXT record at <DKIM_SELECTOR>._domainkey.<DKIM_DOMAIN> publishes the public
           half of DKIM_PRIVATE_KEY (same type, same key, not revoked)
    DMARC  a `v=DMARC1` record at _dmarc.<From domain> (or its organisational domain),
           a policy, and From aligned with the DKIM d= and the SPF (bounce) domain
    MX     the bounce domain receives mail, so bounces come back

Each problem is one finding with its fix: for a record, the record to publish. A
resolver that does not answer is one warning naming it (dns_lookup.py), never a
crash or a hang. Names reserved for examples (example.com, .test) are not asked.

NEWSLETTER_BOUNCE_ADDRESS and the NEWSLETTER_DKIM_* settings are read with getattr:
they come with the bounce and signing work of the same issue, and until then the
envelope sender is FROM_ADDRESS and nothing is signed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.config import Finding, Settings, Severity, is_loopback_host, is_test_host
from newsletter.doctor.dns_lookup import DnsUnanswered, Lookup
from newsletter.doctor.dns_records import (
    PublicKey,
    aligned,
    dkim_public_key,
    dkim_record,
    is_spf,
    key_type,
    organisational_domain,
    same_key,
    spf_allows,
    spf_problems,
    spf_terms,
    tags,
)
from newsletter.hygiene import one_line

#: RFC 8301: verifiers ignore RSA signatures made with a smaller key.
MIN_RSA_BITS = 1024
DMARC_POLICIES = ("none", "quarantine", "reject")
ORGANISATIONAL_RULE = (
    "the organisational domain by a rule of thumb (the last two labels, three under "
    "co.uk-style suffixes), not the Public Suffix List"
)


@dataclass(frozen=True)
class MailDomains:
    """The names the checks ask about, from the settings."""

    from_address: str
    from_domain: str
    bounce_address: str  # the envelope sender: BOUNCE_ADDRESS, or FROM_ADDRESS without it
    bounce_domain: str
    bounce_set: bool
    dkim_key: Path | None
    dkim_selector: str
    dkim_domain: str

    @classmethod
    def of(cls, settings: Settings) -> MailDomains:
        bounce = _setting(settings, "bounce_address")
        key = _setting(settings, "dkim_private_key")
        return cls(
            from_address=settings.from_address,
            from_domain=settings.sender_domain.lower(),
            bounce_address=bounce or settings.from_address,
            bounce_domain=(bounce or settings.from_address).rsplit("@", 1)[-1].lower(),
            bounce_set=bool(bounce),
            dkim_key=Path(key).expanduser() if key else None,
            dkim_selector=_setting(settings, "dkim_selector"),
            dkim_domain=(_setting(settings, "dkim_domain") or settings.sender_domain).lower(),
        )


def _setting(settings: Settings, name: str) -> str:
    """A setting that may not exist yet in this version, as text ("" when unset)."""
    value = getattr(settings, name, None)
    if value is None:
        return ""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return str(value).strip()


DnsCheck = Callable[[Lookup, MailDomains, Settings], list[Finding]]


def check_dns(settings: Settings) -> list[Finding]:
    """SPF, DKIM, DMARC and MX, asking one resolver; a dead one ends them with one warning."""
    domains = MailDomains.of(settings)
    reserved = sorted({d for d in (domains.from_domain, domains.bounce_domain) if is_test_host(d)})
    if reserved:
        return [
            Finding(
                Severity.INFO,
                "dns",
                f"not checked: {', '.join(reserved)} is a name reserved for examples, "
                "no DNS answers for it",
            )
        ]
    lookup = Lookup.from_settings(settings)
    findings: list[Finding] = []
    checks: tuple[tuple[str, DnsCheck], ...] = (
        ("SPF", check_spf),
        ("DKIM", check_dkim),
        ("DMARC", check_dmarc),
        ("MX", check_mx),
    )
    for index, (name, check) in enumerate(checks):
        try:
            findings.extend(check(lookup, domains, settings))
        except DnsUnanswered as exc:
            left = ", ".join(other for other, _ in checks[index:])
            where = "dns" if exc.where == "dns" else f"{name} {exc.where}"
            findings.append(
                Finding(Severity.WARNING, where, f"{exc.message}; not checked: {left}", exc.hint)
            )
            if exc.where == "dns":
                break
    return findings


# --- SPF -----------------------------------------------------------------------------------


def check_spf(lookup: Lookup, domains: MailDomains, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    if not domains.bounce_set:
        findings.append(
            Finding(
                Severity.INFO,
                "SPF",
                f"no NEWSLETTER_BOUNCE_ADDRESS: the envelope sender is {domains.from_address}, "
                f"so the bounce domain checked is {domains.from_domain}",
            )
        )
    for domain in dict.fromkeys((domains.bounce_domain, domains.from_domain)):
        findings.append(_spf_at(lookup, domain, settings))
    return findings


def _spf_at(lookup: Lookup, domain: str, settings: Settings) -> Finding:
    subject = f"SPF {domain}"
    publish = f'publish one TXT record at {domain}: "{_spf_suggestion(settings)}"'
    records = [record for record in lookup.txt(domain) if is_spf(record)]
    if not records:
        return Finding(
            Severity.ERROR,
            subject,
            "no SPF record (TXT v=spf1): receivers cannot tell our relay from a forger",
            publish,
        )
    if len(records) > 1:
        shown = " and ".join(repr(one_line(record)) for record in records)
        return Finding(
            Severity.ERROR,
            subject,
            f"{len(records)} SPF records ({shown}); receivers treat more than one as a "
            "permanent error (RFC 7208 §4.5)",
            "merge them into one TXT record",
        )
    record = one_line(records[0])
    problems = spf_problems(record)
    if problems:
        return Finding(
            Severity.ERROR,
            subject,
            f"{record!r} is malformed ({'; '.join(problems)}): receivers treat it as a "
            "permanent error",
            f"correct it, e.g. {publish}",
        )
    terms = spf_terms(record)
    ending = next((t for t in terms if t.name == "all" and t.qualifier != ""), None)
    if ending is not None and ending.qualifier == "+":
        return Finding(
            Severity.ERROR,
            subject,
            f"{record!r} ends in +all: it authorises every server on the internet to send as "
            f"{domain}",
            "end it with -all (or ~all) instead",
        )
    redirect = any(t.qualifier == "" and t.name == "redirect" for t in terms)
    if not redirect and (ending is None or ending.qualifier == "?"):
        return Finding(
            Severity.WARNING,
            subject,
            f"{record!r} does not end in -all or ~all: mail from any other server is only "
            "'neutral', not a fail",
            "end it with -all (or ~all)",
        )
    return _spf_relay(lookup, subject, record, settings)


def _spf_relay(lookup: Lookup, subject: str, record: str, settings: Settings) -> Finding:
    """Whether the record passes the relay's address: said only when its ip4/ip6 terms decide;
    include:, a, mx and the rest are not followed here (a receiver would)."""
    addresses = _relay_addresses(lookup, settings.smtp_host)
    if not addresses:
        return Finding(Severity.OK, subject, f"{record!r} (the relay's sending address unknown "
                       "here, so not matched against it)")  # fmt: skip
    verdicts = [spf_allows(spf_terms(record), address) for address in addresses]
    shown = ", ".join(addresses)
    if all(verdict is True for verdict in verdicts):
        return Finding(Severity.OK, subject, f"{record!r} authorises the relay ({shown})")
    if any(verdict is None for verdict in verdicts):
        return Finding(
            Severity.OK,
            subject,
            f"{record!r} (whether it authorises the relay {shown} is unknown: its include:, "
            "a or mx terms are not followed here)",
        )
    return Finding(
        Severity.WARNING,
        subject,
        f"{record!r} does not authorise the relay NEWSLETTER_SMTP_HOST ({shown})",
        "add the relay's sending address (ip4:…) or its provider's include: — unless the "
        "relay hands mail on from other addresses that the record does list",
    )


def _relay_addresses(lookup: Lookup, host: str) -> list[str]:
    """The relay's addresses; [] for a relay on this machine (it sends from this machine's
    public address, which is not known here) or one the resolver does not know."""
    if is_loopback_host(host):
        return []
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        return lookup.addresses(host)
    except DnsUnanswered:
        return []


def _spf_suggestion(settings: Settings) -> str:
    host = settings.smtp_host.strip("[]")
    if is_loopback_host(host):
        return "v=spf1 ip4:<this server's public address> -all"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"v=spf1 a:{host} -all"
    return f"v=spf1 ip{address.version}:{address} -all"


# --- DKIM ----------------------------------------------------------------------------------


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


# --- DMARC ---------------------------------------------------------------------------------


def check_dmarc(lookup: Lookup, domains: MailDomains, settings: Settings) -> list[Finding]:
    from_domain = domains.from_domain
    organisation = organisational_domain(from_domain)
    name = f"_dmarc.{from_domain}"
    records = _dmarc_records(lookup, name)
    inherited = False
    if not records and organisation != from_domain:
        name, inherited = f"_dmarc.{organisation}", True
        records = _dmarc_records(lookup, name)
    subject = f"DMARC {name}"
    publish = f'publish one TXT record at _dmarc.{organisation}: "v=DMARC1; p=quarantine"'
    if not records:
        tried = f"_dmarc.{from_domain}" + (f" nor _dmarc.{organisation}" if inherited else "")
        note = f" ({organisation} is {ORGANISATIONAL_RULE})" if inherited else ""
        return [
            Finding(
                Severity.ERROR,
                "DMARC",
                f"no DMARC record at {tried}{note}: Gmail and Yahoo require one of bulk senders",
                publish,
            )
        ]
    if len(records) > 1:
        return [Finding(Severity.ERROR, subject, f"{len(records)} DMARC records: receivers then "
                        "apply none (RFC 7489 §6.6.3)", "keep one")]  # fmt: skip
    record = one_line(records[0])
    try:
        found = tags(record)
    except ValueError as exc:
        return [Finding(Severity.ERROR, subject, f"malformed: {exc}", f"replace it: {publish}")]
    policy = found.get("sp", found.get("p")) if inherited else found.get("p")
    modes = {key: found.get(key, "r") for key in ("adkim", "aspf")}
    problem = None
    if found.get("v") != "DMARC1":
        problem = f"{record!r} does not start with v=DMARC1"
    elif policy is None:
        problem = f"{record!r} has no p= policy"
    elif policy not in DMARC_POLICIES:
        problem = f"p={policy} is not one of {', '.join(DMARC_POLICIES)}"
    elif any(mode not in ("r", "s") for mode in modes.values()):
        problem = "adkim= and aspf= take r (relaxed) or s (strict)"
    if problem is not None:
        return [Finding(Severity.ERROR, subject, f"malformed: {problem}", f"replace it: {publish}")]
    via = f" (inherited: {organisation} is {ORGANISATIONAL_RULE})" if inherited else ""
    if policy == "none":
        first = Finding(
            Severity.WARNING,
            subject,
            f"p=none{via}: receivers report failures but act on none, and forged mail as "
            f"{from_domain} still arrives",
            "once the reports show our mail passing, move to p=quarantine (then reject)",
        )
    else:
        first = Finding(Severity.OK, subject, f"p={policy}{via}")
    return [first, _alignment(domains, modes["adkim"], modes["aspf"])]


def _dmarc_records(lookup: Lookup, name: str) -> list[str]:
    """Records starting `v=DMARC1`: receivers ignore any other TXT at the name."""
    return [r for r in lookup.txt(name) if r.replace(" ", "").upper().startswith("V=DMARC1")]


def _alignment(domains: MailDomains, adkim: str, aspf: str) -> Finding:
    """DMARC passes when either DKIM's d= or SPF's (bounce) domain aligns with From."""
    from_domain = domains.from_domain
    words = {"r": "relaxed", "s": "strict"}
    subject = "DMARC alignment"
    dkim = domains.dkim_key is not None and aligned(domains.dkim_domain, from_domain, adkim)
    spf = aligned(domains.bounce_domain, from_domain, aspf)
    dkim_said = f"DKIM d={domains.dkim_domain} ({words[adkim]})"
    spf_said = f"SPF {domains.bounce_domain} ({words[aspf]})"
    if dkim and spf:
        return Finding(Severity.OK, subject, f"From {from_domain} aligns with {dkim_said} and "
                       f"{spf_said}")  # fmt: skip
    spf_fix = (
        f"use a bounce address at {from_domain}"
        + (" or a subdomain of it" if aspf == "r" else "")
        + " (NEWSLETTER_BOUNCE_ADDRESS)"
    )
    dkim_fix = f"set NEWSLETTER_DKIM_DOMAIN to {from_domain}" + (
        " or a subdomain of it" if adkim == "r" else ""
    )
    if domains.dkim_key is None:
        if spf:
            return Finding(Severity.OK, subject, f"From {from_domain} aligns with {spf_said} "
                           "(nothing is DKIM-signed)")  # fmt: skip
        return Finding(
            Severity.ERROR,
            subject,
            f"nothing aligns with From {from_domain}: not {spf_said}, and nothing is "
            "DKIM-signed, so DMARC fails for every message",
            f"{spf_fix}; and sign with DKIM at {from_domain}",
        )
    if dkim or spf:
        good, bad, fix = (dkim_said, spf_said, spf_fix) if dkim else (spf_said, dkim_said, dkim_fix)
        return Finding(
            Severity.WARNING,
            subject,
            f"From {from_domain} aligns with {good} only, not {bad}: DMARC passes while that "
            "one does",
            fix,
        )
    return Finding(
        Severity.ERROR,
        subject,
        f"nothing aligns with From {from_domain}: not {dkim_said}, not {spf_said}, so DMARC "
        "fails for every message",
        f"{dkim_fix}; or {spf_fix}",
    )


# --- MX ------------------------------------------------------------------------------------


def check_mx(lookup: Lookup, domains: MailDomains, settings: Settings) -> list[Finding]:
    domain = domains.bounce_domain
    subject = f"MX {domain}"
    records = lookup.mx(domain)
    fix = (
        f"publish an MX record at {domain} naming the server that receives mail for "
        f"{domains.bounce_address}"
    )
    if not records:
        return [Finding(Severity.ERROR, subject, f"no MX record: bounces sent to "
                        f"{domains.bounce_address} may never come back", fix)]  # fmt: skip
    if any(host in (".", "") for _, host in records):
        return [
            Finding(
                Severity.ERROR,
                subject,
                f"a null MX (RFC 7505): {domain} says it receives no mail, so bounces to "
                f"{domains.bounce_address} are refused",
                fix.replace("publish", "replace it with"),
            )
        ]
    shown = ", ".join(f"{one_line(host)} ({preference})" for preference, host in records)
    return [Finding(Severity.OK, subject, f"bounces to {domains.bounce_address} go to {shown}")]
