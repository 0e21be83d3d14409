"""The doctor's checks of what is on this machine: the settings, the templates (email and
web, rendered in-process) and the database (there, every table, writable, the schema version).

Each returns findings and may raise; `run_doctor` guards every check (doctor/__init__.py).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from newsletter.app.publish import real_recipient
from newsletter.config import Finding, Settings, Severity, check_settings, is_trial
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

#: The web pages rendered in-process, with the status each answers when it works.
WEB_PAGES = {
    "/subscribe": 200,
    "/unsubscribe": 200,
    "/unsubscribe/not-a-token": 400,  # the "bad link" page
    "/archive": 200,
    "/archive/2000-01-01": 404,  # the error page
    "/editor/login": 200,
}


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
