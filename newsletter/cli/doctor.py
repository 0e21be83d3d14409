"""`newsletter doctor`: the pre-flight checks (newsletter/doctor.py), one line per finding."""

from __future__ import annotations

import typer

from newsletter.cli.context import console, settings_of
from newsletter.config import Severity

_STYLE = {
    Severity.OK: "green",
    Severity.INFO: "blue",
    Severity.WARNING: "yellow",
    Severity.ERROR: "red",
}


def doctor(ctx: typer.Context) -> None:
    """Check everything a real send needs, before the first one: settings, templates,
    database, relay (what it offers, its certificate, the login), the site, and the DNS
    records receivers look up (SPF, the DKIM key, DMARC and its alignment, MX for bounces;
    NEWSLETTER_DNS_RESOLVER names the resolver asked).

    One line per finding, each with its fix, then a summary. Exit code 1 when any
    finding is an error; warnings alone pass.

    Example: newsletter doctor
    """
    from newsletter.doctor import run_doctor

    report = run_doctor(settings_of(ctx))
    for finding in report.findings:
        label = f"[{_STYLE[finding.severity]}]{finding.severity.value:<7}[/]"
        console.print(f"{label} {finding}", highlight=False, soft_wrap=True)
    errors, warnings = report.count(Severity.ERROR), report.count(Severity.WARNING)
    summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    if errors:
        console.print(f"{summary}: fix the errors before the first send", highlight=False)
        raise typer.Exit(1)
    verdict = "ready to send" if not warnings else "ready to send; the warnings are worth a look"
    console.print(f"{summary}: {verdict}", highlight=False)
