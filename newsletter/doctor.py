"""`newsletter doctor`: the operator's pre-flight before the first real send.

    settings   the sending rule (config.check_settings): secret, placeholders, https
    templates  a sample edition through the email templates (html and text), and the
               web pages rendered in-process on a throwaway database
    database   there, reachable, every table present, writable (a rolled-back write),
               and its schema version
    relay      connect as configured, EHLO, what it offers, certificate, login
               (delivery/probe.py)
    site       BASE_URL's /healthz and a public page, over the network

Each check returns findings (config.Finding: severity, subject, message, fix)
and never raises: anything it meets, foreseen or not, becomes an error finding
naming the check, and the next check runs. The CLI prints one line per finding
and exits 1 when any is an error. Every network step is bounded (SMTP_TIMEOUT
for the relay, SITE_TIMEOUT for the site).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from newsletter.app.publish import real_recipient
from newsletter.config import (
    Finding,
    Settings,
    Severity,
    SmtpSecurity,
    check_settings,
    is_loopback_host,
    is_test_host,
    is_trial,
    url_host,
)
from newsletter.delivery.probe import RelayReport, probe_relay
from newsletter.errors import NewsletterError
from newsletter.hygiene import one_line
from newsletter.models import SubscriberStatus
from newsletter.render import check_templates
from newsletter.store import engine as store_engine
from newsletter.store import probe as store_probe
from newsletter.store.engine import database_name, open_engine
from newsletter.store.migrate import head_revision, upgrade
from newsletter.store.stats import ping
from newsletter.store.subscribers import count_by_status

#: Seconds to wait for BASE_URL to answer (each of the two requests).
SITE_TIMEOUT = 10.0
#: The web pages rendered in-process, with the status each answers when it works.
WEB_PAGES = {
    "/subscribe": 200,
    "/unsubscribe": 200,
    "/unsubscribe/not-a-token": 400,  # the "bad link" page
    "/archive": 200,
    "/archive/2000-01-01": 404,  # the error page
    "/editor/login": 200,
}
#: The ESMTP extensions worth naming, in the order they are shown.
SHOWN_EXTENSIONS = ("STARTTLS", "PIPELINING", "CHUNKING", "SIZE", "SMTPUTF8", "8BITMIME")

Check = Callable[[Settings], list[Finding]]


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
            findings.extend(_guarded(name, check, settings))
    return DoctorReport(tuple(findings))


def _guarded(name: str, check: Check, settings: Settings) -> list[Finding]:
    try:
        return check(settings)
    except NewsletterError as exc:
        return [Finding(Severity.ERROR, exc.where or name, exc.message, exc.hint or "")]
    except Exception as exc:  # a check must never stop the others: report it and go on
        return [
            Finding(
                Severity.ERROR,
                name,
                f"the check itself failed: {type(exc).__name__}: {one_line(str(exc))}",
                "please report it with this line",
            )
        ]


# --- settings -----------------------------------------------------------------------------


def check_settings_rule(settings: Settings) -> list[Finding]:
    """The same rule every send applies; in a trial its placeholders are only warnings."""
    recipient = _real_recipient(settings)
    findings = list(check_settings(settings, real_recipient=recipient))
    if not findings:
        return [Finding(Severity.OK, "settings", "secret key set, no placeholders, https links")]
    trial = is_trial(settings, real_recipient=recipient)
    if trial and any(f.severity is Severity.WARNING for f in findings):
        findings.append(
            Finding(
                Severity.INFO,
                "settings",
                "the placeholders above are only warnings because this is a trial: the relay "
                "is on this machine and every address is a test name; a real send refuses them",
            )
        )
    return findings


def _real_recipient(settings: Settings) -> str | None:
    """As a send looks it up (`app.real_recipient`); a database that does not open counts
    as none here, since the database check below reports it."""
    try:
        engine = open_engine(settings.database_url)
    except NewsletterError:
        return None
    try:
        return real_recipient(engine, settings)
    except NewsletterError:
        return None
    finally:
        engine.dispose()


# --- templates ----------------------------------------------------------------------------


def check_email_templates(settings: Settings) -> list[Finding]:
    check_templates(settings)  # RenderError names the template and line
    return [
        Finding(
            Severity.OK,
            "email templates",
            f"a sample edition renders (html and text) from {_templates_shown(settings)}",
        )
    ]


def check_web_pages(settings: Settings) -> list[Finding]:
    """Render the public and login pages in-process on a throwaway database.

    Not the operator's database (nothing is created or written there), and not
    over the network (the site check does that): a template that is missing or
    broken shows here as the page and the error, before a subscriber meets a 500.
    """
    with tempfile.TemporaryDirectory(prefix="newsletter-doctor-") as folder:
        throwaway = settings.model_copy(
            update={
                "database_url": f"sqlite:///{Path(folder) / 'pages.db'}",
                "secret_key": SecretStr(secrets.token_urlsafe(32)),
            }
        )
        upgrade(throwaway.database_url)  # the schema, in the throwaway file, as `init` makes it
        broken = asyncio.run(_render_pages(throwaway))
    if not broken:
        shown = ", ".join(WEB_PAGES)
        return [Finding(Severity.OK, "web templates", f"the pages render: {shown}")]
    return [
        Finding(
            Severity.ERROR,
            f"web page {path}",
            problem,
            f"fix the web templates in {_templates_shown(settings, 'web')} "
            "(or NEWSLETTER_TEMPLATES_DIR)",
        )
        for path, problem in broken
    ]


def _templates_shown(settings: Settings, folder: str = "") -> str:
    """The operator's template folder, or "the built-in templates" when there is none."""
    if settings.templates_dir is None:
        return "the built-in templates"
    return str(settings.templates_dir / folder) if folder else str(settings.templates_dir)


async def _render_pages(settings: Settings) -> list[tuple[str, str]]:
    from newsletter.web import create_app

    app = create_app(settings)
    broken: list[tuple[str, str]] = []
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://doctor.invalid") as web:
            for path, expected in WEB_PAGES.items():
                try:
                    response = await web.get(path)
                except Exception as exc:  # the page raised: a template missing or broken
                    broken.append((path, f"{type(exc).__name__}: {one_line(str(exc))}"))
                    continue
                if response.status_code != expected:
                    broken.append((path, f"answered {response.status_code}, not {expected}"))
    finally:
        app.state.engine.dispose()
    return broken


# --- database -----------------------------------------------------------------------------


def check_database(settings: Settings) -> list[Finding]:
    """There, answering, every table present, writable; and the schema version."""
    where = "NEWSLETTER_DATABASE_URL"
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return [Finding(Severity.ERROR, where, f"not a database URL: {settings.database_url!r}")]
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:"):
            return [
                Finding(
                    Severity.ERROR,
                    where,
                    "an in-memory SQLite database forgets everything when the process ends",
                    "use sqlite:///path/to/newsletter.db",
                )
            ]
        if url.query.get("uri") != "true" and not Path(path).is_file():
            return [
                Finding(
                    Severity.ERROR,
                    path,
                    "no database file here",
                    "`newsletter init` creates it; or fix NEWSLETTER_DATABASE_URL",
                )
            ]
    engine = store_engine.connect(settings.database_url, creating=False)  # schema checked below
    try:
        name = database_name(engine)
        ping(engine)
        schema = check_schema_version(engine)
        missing = store_probe.missing_tables(engine)
        empty = len(missing) == len(store_probe.metadata.tables)
        if schema.severity is Severity.ERROR and not empty:  # a later revision's tables missing
            return [schema]
        if missing:
            return [
                Finding(
                    Severity.ERROR,
                    name,
                    f"tables missing: {', '.join(missing)}",
                    "`newsletter init` creates them",
                )
            ]
        store_probe.check_writable(engine)
        active = count_by_status(engine)[SubscriberStatus.ACTIVE]
        return [
            Finding(
                Severity.OK, "database", f"{name}: reachable, writable, {active} active subscribers"
            ),
            schema,
        ]
    finally:
        engine.dispose()


def check_schema_version(engine: Engine) -> Finding:
    """The database's schema revision against the one this version's migrations end at.

    Behind (or never versioned, as databases made before migrations are) is an
    error: every other command refuses such a database until `newsletter init`
    upgrades it.
    """
    current, head = store_engine.current_revision(engine), head_revision()
    if current == head:
        return Finding(Severity.OK, "schema", f"at {head}, this version's")
    if current is None:
        return Finding(
            Severity.ERROR,
            "schema",
            f"not versioned (made before migrations); this version needs {head}",
            "back it up, then run `newsletter init` to upgrade it",
        )
    return Finding(
        Severity.ERROR,
        "schema",
        f"at {current}, this version needs {head}",
        "back it up, then run `newsletter init` to upgrade it (a newer version's database "
        "needs that version)",
    )


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
    return findings


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


CHECKS: tuple[tuple[str, Check], ...] = (
    ("settings", check_settings_rule),
    ("email templates", check_email_templates),
    ("web pages", check_web_pages),
    ("database", check_database),
    ("relay", check_relay),
    ("site", check_site),
)
