"""What the editor pages show, gathered from the source, the store and the renderer.

No Starlette here: these are plain (blocking) functions the handlers run in a
thread, so a slow render or a big articles directory never stalls a send that
runs in the server's event loop.

The preview is made by the code that makes a subscriber's message: the stored
edition if there is one (what the send will use), else a fresh render, then
`compose_message` for a sample recipient, and the HTML and text parts decoded
back out of those MIME bytes, exactly as a mail client would.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

from sqlalchemy import Engine

from newsletter.articles import open_source
from newsletter.compose import compose_message
from newsletter.config import Settings
from newsletter.edition import build_edition
from newsletter.errors import NewsletterError
from newsletter.models import DeliveryStatus, Edition, Recipient, RenderedEdition, SkippedFile
from newsletter.pipeline import build_preview
from newsletter.render import GMAIL_CLIP_BYTES, edition_warnings
from newsletter.store import editions as edition_store
from newsletter.store import editor as editor_store
from newsletter.store.editions import EditionStatus, StoredEdition

#: Whom the preview is personalised for: a made-up reader, never a real subscriber.
SAMPLE_RECIPIENT = Recipient(None, "reader@example.com", "Sample Reader")

DASHBOARD_DAYS = 30


# ── the dashboard ─────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class DayRow:
    """One date on the dashboard: what the source has, and what was stored and sent."""

    date: dt.date
    source_articles: int | None  # None: the source was not read for this date
    skipped: int
    edition: editor_store.EditionSummary | None

    @property
    def status(self) -> str:
        return self.edition.status.value if self.edition else "none"

    @property
    def delivered(self) -> int:
        return self.edition.deliveries[DeliveryStatus.SENT] if self.edition else 0

    @property
    def pending(self) -> int:
        if self.edition is None:
            return 0
        counts = self.edition.deliveries
        return counts[DeliveryStatus.QUEUED] + counts[DeliveryStatus.SENDING]

    @property
    def failed(self) -> int:
        return self.edition.deliveries[DeliveryStatus.FAILED] if self.edition else 0


def list_days(
    engine: Engine, settings: Settings, limit: int = DASHBOARD_DAYS
) -> tuple[list[DayRow], str | None]:
    """The newest dates the source has or an edition was stored for, newest first.

    The second value is why the source could not be read (the stored editions
    are listed all the same).
    """
    stored = {summary.date: summary for summary in editor_store.edition_summaries(engine, limit)}
    problem: str | None = None
    counts: dict[dt.date, tuple[int, int]] = {}
    try:
        source = open_source(settings.articles_source, settings.zone)
        dates = sorted(set(source.available_dates()) | set(stored), reverse=True)[:limit]
        for date in dates:
            day = source.articles_for(date)
            counts[date] = (len(day.articles), len(day.skipped))
    except NewsletterError as exc:
        problem = str(exc)
        dates = sorted(stored, reverse=True)
    rows = []
    for date in dates:
        articles, skipped = counts.get(date, (None, 0))
        rows.append(DayRow(date, articles, skipped, stored.get(date)))
    return rows, problem


# ── one edition ───────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class EditionPreview:
    """A date's edition as the sample recipient's mail client shows it, and what to fix."""

    date: dt.date
    stored: StoredEdition | None
    message: bytes
    subject: str
    preheader: str
    sender: str
    html: str
    text: str
    article_count: int
    warnings: tuple[str, ...]
    skipped: tuple[SkippedFile, ...]
    notes: tuple[str, ...]

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def over_clip_limit(self) -> bool:
        return self.html_bytes > GMAIL_CLIP_BYTES

    @property
    def status(self) -> str:
        return self.stored.status.value if self.stored else "none"


def load_preview(engine: Engine, settings: Settings, date: dt.date) -> EditionPreview | None:
    """The preview of `date`, or None when there is neither a stored edition nor articles.

    Raises RenderError (with the template's file and line) when the templates
    are broken, and SourceError when the articles cannot be read.
    """
    stored = edition_store.get_edition(engine, date)
    if stored is None:
        built = build_preview(settings, date)
        if built is None:
            return None
        rendered, count = built.rendered, built.article_count
        warnings, skipped, notes = built.rendered.warnings, built.skipped, ()
    else:
        rendered, count = stored.rendered, stored.article_count
        warnings, skipped, notes = _stored_checks(settings, stored)
    data = compose_message(rendered, settings, SAMPLE_RECIPIENT)
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    html, text = message_parts(message)
    return EditionPreview(
        date=date,
        stored=stored,
        message=data,
        subject=str(message["Subject"]),
        preheader=rendered.preheader,
        sender=str(message["From"]),
        html=html,
        text=text,
        article_count=count,
        warnings=warnings,
        skipped=skipped,
        notes=notes,
    )


def message_parts(message: EmailMessage) -> tuple[str, str]:
    """The HTML and the text part, decoded from the MIME message as a mail client does."""
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    html = html_part.get_content() if html_part is not None else ""
    text = text_part.get_content() if text_part is not None else ""
    return html, text


def _stored_checks(
    settings: Settings, stored: StoredEdition
) -> tuple[tuple[str, ...], tuple[SkippedFile, ...], tuple[str, ...]]:
    """Warnings for a stored edition, whose render-time warnings are not kept.

    The size is measured on the stored HTML; the article checks look at the
    source as it is now. When the source no longer matches what was stored, the
    editor is told (a rebuild picks the changes up, until the send starts).
    """
    rendered = stored.rendered
    try:
        day = open_source(settings.articles_source, settings.zone).articles_for(rendered.date)
    except NewsletterError as exc:
        empty = _empty_edition(rendered)
        return edition_warnings(empty, rendered.html), (), (f"cannot read the source: {exc}",)
    edition = build_edition(day, settings)
    if edition is None:
        warnings = edition_warnings(_empty_edition(rendered), rendered.html)
        return warnings, day.skipped, ("the source has no articles for this date any more",)
    notes: tuple[str, ...] = ()
    changed = edition.subject != rendered.subject or len(edition.articles) != stored.article_count
    if changed and stored.status in (EditionStatus.BUILT, EditionStatus.HELD):
        notes = (
            "the articles changed since this edition was built; rebuild it to send the new ones",
        )
    return edition_warnings(edition, rendered.html), day.skipped, notes


def _empty_edition(rendered: RenderedEdition) -> Edition:
    return Edition(rendered.date, (), rendered.subject, rendered.preheader)
