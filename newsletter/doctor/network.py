"""The doctor's checks over the network to our own services: the relay (connect as
configured, EHLO, what it offers, certificate, login: delivery/probe.py) and the site
(BASE_URL's /healthz and a public page). Each step is bounded: SMTP_TIMEOUT for the relay,
SITE_TIMEOUT for the site.
"""

from __future__ import annotations

import asyncio
import re

import httpx

from newsletter.config import (
    Finding,
    Settings,
    Severity,
    SmtpSecurity,
    is_loopback_host,
    is_test_host,
    url_host,
)
from newsletter.delivery.probe import RelayReport, probe_relay
from newsletter.hygiene import one_line

#: Seconds to wait for BASE_URL to answer (each of the two requests).
SITE_TIMEOUT = 10.0
#: The ESMTP extensions worth naming, in the order they are shown.
SHOWN_EXTENSIONS = ("STARTTLS", "PIPELINING", "CHUNKING", "SIZE", "SMTPUTF8", "8BITMIME")


# --- relay --------------------------------------------------------------------------------


def check_relay(settings: Settings) -> list[Finding]:
    report = asyncio.run(probe_relay(settings))
    return relay_findings(settings, report)


def relay_findings(settings: Settings, report: RelayReport) -> list[Finding]:
    """The probe's report as lines: what it offers, its certificate, the login, the problem."""
    subject = f"relay {report.where}"
    findings: list[Finding] = []
    if report.greeting:
        findings.append(Finding(Severity.OK, subject, f"{_connection(report)}: {_offers(report)}"))
    if report.certificate:
        findings.append(Finding(Severity.OK, subject, f"certificate {report.certificate}, trusted"))
    if report.login:
        findings.append(
            Finding(Severity.OK, subject, f"login as {settings.smtp_username} accepted")
        )
    if report.problem is not None:
        findings.append(
            Finding(Severity.ERROR, subject, report.problem.message, report.problem.hint or "")
        )
        return findings
    if report.starttls_unused:
        loopback = is_loopback_host(settings.smtp_host)
        findings.append(
            Finding(
                Severity.INFO if loopback else Severity.WARNING,
                subject,
                "offers STARTTLS, unused with NEWSLETTER_SMTP_SECURITY=none"
                + ("" if loopback else ": mail and password cross the network in the clear"),
                "set NEWSLETTER_SMTP_SECURITY=starttls",
            )
        )
    if "PIPELINING" not in report.extensions:
        findings.append(
            Finding(
                Severity.INFO,
                subject,
                "no PIPELINING: each message takes four round trips instead of two",
            )
        )
    if report.auth_methods and not settings.smtp_username:
        findings.append(
            Finding(
                Severity.INFO,
                subject,
                "offers AUTH but no NEWSLETTER_SMTP_USERNAME is set; fine if it accepts "
                "this host without a login",
            )
        )
    return findings


def _connection(report: RelayReport) -> str:
    if report.tls_version is None:
        return "connected without TLS" if report.security == SmtpSecurity.NONE else "connected"
    how = "STARTTLS" if report.security == SmtpSecurity.STARTTLS else "TLS"
    return f"connected with {how} ({report.tls_version})"


def _offers(report: RelayReport) -> str:
    offered: list[str] = []
    for name in SHOWN_EXTENSIONS:
        if name not in report.extensions:
            continue
        if name == "SIZE" and report.size_limit is not None:
            offered.append(f"SIZE {report.size_limit} ({report.size_limit / 1_048_576:.1f} MB)")
        else:
            offered.append(name)
    if report.auth_methods:
        offered.append("AUTH " + " ".join(report.auth_methods))
    return "offers " + (", ".join(offered) if offered else "no extensions")


# --- the site -----------------------------------------------------------------------------


def check_site(settings: Settings) -> list[Finding]:
    """BASE_URL's /healthz and a public page, as a subscriber's browser reaches them."""
    base = settings.base_url
    host = url_host(base)
    if is_test_host(host) and not is_loopback_host(host):
        return [
            Finding(
                Severity.INFO,
                "site",
                f"not checked: {host} is a name reserved for examples, no site answers there",
            )
        ]
    with httpx.Client(timeout=SITE_TIMEOUT, follow_redirects=True) as client:
        health = _get(client, f"{base}/healthz")
        if isinstance(health, Finding):
            return [health]
        findings: list[Finding] = []
        if health.status_code == 503:
            findings.append(
                Finding(
                    Severity.ERROR,
                    f"{base}/healthz",
                    "the site answers, but its database does not",
                    "check NEWSLETTER_DATABASE_URL where `newsletter serve` runs",
                )
            )
        elif health.status_code != 200 or "database" not in health.text:
            findings.append(
                Finding(
                    Severity.ERROR,
                    f"{base}/healthz",
                    f"answered {health.status_code}, not the newsletter's health check",
                    "point BASE_URL (and the proxy) at `newsletter serve`",
                )
            )
        else:
            answer = f"{base}/healthz answers: {_health(health)}"
            findings.append(Finding(Severity.OK, "site", answer))
        page = _get(client, f"{base}/subscribe")
        if isinstance(page, Finding):
            findings.append(page)
        elif page.status_code != 200:
            findings.append(
                Finding(
                    Severity.ERROR,
                    f"{base}/subscribe",
                    f"answered {page.status_code}",
                    "see the log of `newsletter serve`",
                )
            )
        else:
            findings.append(Finding(Severity.OK, "site", f"{base}/subscribe answers 200"))
        findings.extend(_metrics_exposure(client, base))
    return findings


def _metrics_exposure(client: httpx.Client, base: str) -> list[Finding]:
    """A warning when anyone can read /metrics at BASE_URL: the list's size, each edition's
    bounce and complaint rates, the sending schedule. Only what a stranger gets counts:
    a 401/403/404 (METRICS_TOKEN, or the proxy's rules) is fine."""
    answer = _get(client, f"{base}/metrics")
    if isinstance(answer, Finding) or answer.status_code != 200:
        return []
    if "newsletter_" not in answer.text:
        return []
    return [
        Finding(
            Severity.WARNING,
            f"{base}/metrics",
            "answers anyone: the list's size and the sender's bounce and complaint rates",
            "set NEWSLETTER_METRICS_TOKEN (Prometheus sends it as a bearer token), or deny "
            "/metrics in the proxy to all but the monitoring host",
        )
    ]


def _get(client: httpx.Client, url: str) -> httpx.Response | Finding:
    """One request; httpx's exceptions become a finding here, once."""
    try:
        return client.get(url)
    except httpx.ConnectError as exc:
        reason = re.sub(r"^\[Errno -?\d+\]\s*", "", one_line(str(exc)))
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            return Finding(
                Severity.ERROR,
                url,
                f"the site's TLS certificate is not trusted: {reason}",
                "give the proxy in front of `newsletter serve` a trusted certificate",
            )
        return Finding(
            Severity.WARNING,
            url,
            f"nothing answers there ({reason or 'connection failed'})",
            "start the web side with `newsletter serve`, behind an https proxy at BASE_URL",
        )
    except httpx.TimeoutException:
        return Finding(
            Severity.WARNING,
            url,
            f"no answer within {SITE_TIMEOUT:g} s",
            "start the web side with `newsletter serve`; check the proxy and firewall",
        )
    except httpx.HTTPError as exc:
        return Finding(
            Severity.ERROR,
            url,
            f"{type(exc).__name__}: {one_line(str(exc))}",
            "check BASE_URL and the proxy in front of `newsletter serve`",
        )


def _health(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "200"
    if not isinstance(body, dict):
        return "200"
    return ", ".join(f"{key} {value}" for key, value in body.items() if isinstance(value, str))
