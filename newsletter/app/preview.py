"""What an editor looks at before the send: a recipient's exact message, and a test send.

The preview is made by the code that makes a subscriber's message: the stored
edition if there is one (what the send will use), else a fresh render, then
`compose_message` for the recipient, and the HTML and text parts decoded back
out of those MIME bytes, exactly as a mail client would. A stored edition's
warnings and skipped files come from the store: its preview never reads the
source (a stamp of the day's files, taken without opening them, tells whether
they changed since the build).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

from sqlalchemy import Engine

from newsletter.addresses import validate_email
from newsletter.app.build import UNSENT, prepare_edition, render_fresh, source_stamp
from newsletter.app.outcomes import InvalidAddress, NoArticles, TestSent
from newsletter.articles import open_source
from newsletter.compose import compose_message
from newsletter.config import Settings
from newsletter.delivery import send_one
from newsletter.errors import InputError, NewsletterError
from newsletter.models import Edition, Recipient, RenderedEdition, SkippedFile
from newsletter.render import GMAIL_CLIP_BYTES, edition_warnings
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store.editions import StoredEdition

#: Whom a preview is personalised for by default: a made-up reader, never a real subscriber.
SAMPLE_RECIPIENT = Recipient(None, "reader@example.com", "Sample Reader")

CHANGED_NOTE = "the articles changed since this edition was built; rebuild it to send the new ones"


@dataclass(frozen=True)
class Preview:
    """A date's edition as one recipient's mail client shows it, and what to fix."""

    date: dt.date
    stored: StoredEdition | None  # None: rendered for the preview only
    recipient: Recipient
    message: bytes  # the exact bytes the recipient gets
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
    def text_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @property
    def over_clip_limit(self) -> bool:
        return self.html_bytes > GMAIL_CLIP_BYTES

    @property
    def status(self) -> str:
        return self.stored.status.value if self.stored else "none"


def preview(
    engine: Engine,
    settings: Settings,
    date: dt.date,
    recipient: Recipient = SAMPLE_RECIPIENT,
    *,
    stored: StoredEdition | None = None,
) -> Preview | NoArticles:
    """The message `recipient` gets for `date`: the stored edition's, else a fresh render's.

    Raises RenderError (with the template's file and line) when the templates
    are broken, and SourceError when the articles cannot be read (for a date
    with no stored edition; a stored one never reads them). `stored` saves the
    lookup when the caller has just read it.
    """
    stored = stored or edition_store.get_edition(engine, date)
    if stored is None:
        fresh = render_fresh(settings, date)
        if isinstance(fresh, NoArticles):
            return fresh
        rendered, count = fresh.rendered, fresh.article_count
        warnings, skipped, notes = rendered.warnings, fresh.skipped, ()
    else:
        rendered, count = stored.rendered, stored.article_count
        warnings, skipped, notes = _stored_checks(settings, stored)
    data = compose_message(rendered, settings, recipient)
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    html, text = message_parts(message)
    return Preview(
        date=date,
        stored=stored,
        recipient=recipient,
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


async def send_test(
    engine: Engine, settings: Settings, date: dt.date, address: str, name: str = ""
) -> TestSent | InvalidAddress | NoArticles:
    """Send the date's real edition (built and stored first if needed) to any address.

    Recorded apart from subscriber deliveries, so it never counts as a send. The
    store and the renderer run in a thread: an event loop calling this (the web
    server's) is never blocked. DeliveryError when the relay cannot be reached.
    """
    try:
        email = validate_email(address)
    except InputError as exc:
        return InvalidAddress(address, exc.message)
    prepared = await asyncio.to_thread(prepare_edition, engine, settings, date)
    if isinstance(prepared, NoArticles):
        return prepared
    stored = prepared.stored
    data = await asyncio.to_thread(
        compose_message, stored.rendered, settings, Recipient(None, email, name)
    )
    result = await send_one(settings, email, data)
    await asyncio.to_thread(
        delivery_store.record_test_send,
        engine,
        stored.id,
        email,
        result.outcome.value,
        result.reply,
    )
    return TestSent(stored, email, result)


def _stored_checks(
    settings: Settings, stored: StoredEdition
) -> tuple[tuple[str, ...], tuple[SkippedFile, ...], tuple[str, ...]]:
    """A stored edition's warnings and skipped files as stored at build time, and notes.

    An edition stored before these were kept gets the size check, measured on
    its stored HTML. The note that the source changed needs no read of it: the
    day's files are stamped (names, sizes, times), for a directory source.
    """
    rendered = stored.rendered
    if stored.skipped is None:
        return edition_warnings(_empty_edition(rendered), rendered.html), (), ()
    notes: tuple[str, ...] = ()
    if stored.status in UNSENT and stored.source_stamp is not None:
        try:
            source = open_source(settings.articles_source, settings.zone)
        except NewsletterError:
            source = None
        if source is not None and source_stamp(source, rendered.date) != stored.source_stamp:
            notes = (CHANGED_NOTE,)
    return rendered.warnings, stored.skipped, notes


def _empty_edition(rendered: RenderedEdition) -> Edition:
    return Edition(rendered.date, (), rendered.subject, rendered.preheader)
