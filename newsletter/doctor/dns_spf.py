"""The doctor's SPF check (RFC 7208): a `v=spf1` TXT record at the bounce domain (the
envelope sender's, which SPF checks) and at the From domain: one, sane, not `+all`, and
whether it passes the relay's address when its ip4/ip6 terms decide that (include:, a
and mx are not followed: "unknown", not an error).
"""

from __future__ import annotations

import ipaddress

from newsletter.config import Finding, Settings, Severity, is_loopback_host
from newsletter.doctor.dns_domains import MailDomains
from newsletter.doctor.dns_lookup import DnsUnanswered, Lookup
from newsletter.doctor.dns_records import is_spf, spf_allows, spf_problems, spf_terms
from newsletter.hygiene import one_line


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
