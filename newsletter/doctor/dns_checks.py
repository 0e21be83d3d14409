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

One module per record: dns_spf.py, dns_dkim.py, dns_dmarc.py; MX is here. The names
asked about come from the settings through dns_domains.py, the answers through
dns_lookup.py (the one module that calls dnspython), and what a record says is read
by dns_records.py.
"""

from __future__ import annotations

from collections.abc import Callable

from newsletter.config import Finding, Settings, Severity, is_test_host
from newsletter.doctor.dns_dkim import check_dkim
from newsletter.doctor.dns_dmarc import check_dmarc
from newsletter.doctor.dns_domains import MailDomains
from newsletter.doctor.dns_lookup import DnsUnanswered, Lookup
from newsletter.doctor.dns_spf import check_spf
from newsletter.doctor.guard import Check, guarded
from newsletter.hygiene import one_line

DnsCheck = Callable[[Lookup, MailDomains, Settings], list[Finding]]


def check_dns(settings: Settings) -> list[Finding]:
    """SPF, DKIM, DMARC and MX, asking one resolver; a dead one ends them with one warning.

    Each record's check is guarded on its own (guard.py): one that breaks is an error
    line naming it, and the next one runs.
    """
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
    names = [name for name, _ in DNS_CHECKS]
    for index, (name, check) in enumerate(DNS_CHECKS):
        unanswered = _unanswered_as_warning(name, names[index:], check, lookup, domains)
        findings.extend(guarded(name, unanswered, settings))
        if lookup.unanswered:
            break  # the resolver is dead: the warning said which checks were not made
    return findings


def _unanswered_as_warning(
    name: str, left: list[str], check: DnsCheck, lookup: Lookup, domains: MailDomains
) -> Check:
    """The check, with a question the resolver did not answer as a warning, not an error:
    the records may well be right; they were not seen."""

    def run(settings: Settings) -> list[Finding]:
        try:
            return check(lookup, domains, settings)
        except DnsUnanswered as exc:
            dead = exc.where == "dns"  # the resolver, not one name's answer
            return [
                Finding(
                    Severity.WARNING,
                    "dns" if dead else f"{name} {exc.where}",
                    f"{exc.message}; not checked: {', '.join(left) if dead else name}",
                    exc.hint or "",
                )
            ]

    return run


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


#: In the order an operator publishes them; each runs even when one before it failed.
DNS_CHECKS: tuple[tuple[str, DnsCheck], ...] = (
    ("SPF", check_spf),
    ("DKIM", check_dkim),
    ("DMARC", check_dmarc),
    ("MX", check_mx),
)
