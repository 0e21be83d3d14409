"""`newsletter doctor`: the operator's pre-flight before the first real send.

    settings   the sending rule (config.check_settings): secret, placeholders, https
    templates  a sample edition through the email templates (html and text), and the
               web pages rendered in-process on a throwaway database
    database   there, reachable, every table present, writable (a rolled-back write),
               and its schema version                                       (local.py)
    relay      connect as configured, EHLO, what it offers, certificate, login
               (delivery/probe.py)
    site       BASE_URL's /healthz and a public page, over the network, and that
               /metrics does not answer strangers                         (network.py)
    dns        SPF of the From and bounce domains, the DKIM record at the selector
               against the configured key, DMARC and its alignment with From, MX
               for the bounce domain                                      (dns_*.py)

Each check returns findings (config.Finding: severity, subject, message, fix)
and never raises: anything it meets, foreseen or not, becomes an error finding
naming the check, and the next check runs (guard.py). The CLI prints one line per
finding and exits 1 when any is an error. Every network step is bounded
(SMTP_TIMEOUT for the relay, SITE_TIMEOUT for the site, DNS_TIMEOUT for DNS).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from newsletter.config import Finding, Settings, Severity
from newsletter.doctor.dns_checks import check_dns
from newsletter.doctor.guard import Check, guarded
from newsletter.doctor.local import (
    check_database,
    check_email_templates,
    check_schema_version,
    check_settings_rule,
    check_web_pages,
)
from newsletter.doctor.network import check_relay, check_site, relay_findings

__all__ = [
    "CHECKS",
    "DoctorReport",
    "check_schema_version",
    "relay_findings",
    "run_doctor",
]


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...]

    def count(self, severity: Severity) -> int:
        return sum(finding.severity is severity for finding in self.findings)

    @property
    def ok(self) -> bool:
        """No errors (warnings alone still pass)."""
        return self.count(Severity.ERROR) == 0


def run_doctor(settings: Settings, *, only: Iterable[str] | None = None) -> DoctorReport:
    """Every check (or the ones named in `only`), in the order an operator fixes things."""
    wanted = None if only is None else set(only)
    findings: list[Finding] = []
    for name, check in CHECKS:
        if wanted is None or name in wanted:
            findings.extend(guarded(name, check, settings))
    return DoctorReport(tuple(findings))


CHECKS: tuple[tuple[str, Check], ...] = (
    ("settings", check_settings_rule),
    ("email templates", check_email_templates),
    ("web pages", check_web_pages),
    ("database", check_database),
    ("relay", check_relay),
    ("site", check_site),
    ("dns", check_dns),
)
