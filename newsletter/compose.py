"""One recipient's message from a stored edition: signed links, filled slots, MIME bytes,
and the DKIM signature over them.

Used by the send loop, test sends and previews alike, so an editor's preview
and a subscriber's copy are made by the same code.
"""

from __future__ import annotations

import datetime as dt
import html
import threading
from functools import lru_cache

from newsletter.config import Settings
from newsletter.dkim import Dkim, dkim_for
from newsletter.message import EditionFrame
from newsletter.models import Recipient, RenderedEdition
from newsletter.personalize import Slots, clean, personalize_pieces
from newsletter.quoted_printable import encode_piece
from newsletter.tokens import Signer, signer_for, unsubscribe_links


def compose_message(
    rendered: RenderedEdition,
    settings: Settings,
    recipient: Recipient,
    *,
    signer: Signer | None = None,
    dkim: Dkim | None = None,
    message_id: str | None = None,
    date: dt.datetime | None = None,
    boundary: str | None = None,
    timestamp: int | None = None,
) -> bytes:
    """The exact bytes one recipient gets: slots filled, headers set, signed unsubscribe
    links, and DKIM-signed when a key is configured.

    `signer` and `dkim` are built from the settings unless given (the send loop builds
    each once per send). `message_id`, `date`, `boundary` and the DKIM `timestamp` are
    new (random, now) unless given; the links are stamped with `date`, so given all of
    them (and a fixed slot token) the bytes are stable: the golden .eml tests rely on it.

    What is the same for every recipient is made once per edition (`EditionComposer`,
    kept for the last few editions, settings, signers and DKIM signers it was called with).
    """
    composer = composer_for(rendered, settings, signer=signer, dkim=dkim)
    return composer.compose(
        recipient, message_id=message_id, date=date, boundary=boundary, timestamp=timestamp
    )


class EditionComposer:
    """One edition's messages for any recipient: everything they share made once.

    The From, Subject and List-Id lines and the fixed header block (`message.EditionFrame`),
    the edition's literal text already quoted-printable (`quoted_printable.encoded_pieces`),
    and the view-online link, the same in every copy, encoded once. Per recipient: the
    unsubscribe token, the recipient's header lines, their slot values encoded, one join
    of about 66 KB, and the DKIM signature when keys are set.
    """

    def __init__(
        self,
        rendered: RenderedEdition,
        settings: Settings,
        *,
        signer: Signer | None = None,
        dkim: Dkim | None = None,
    ) -> None:
        self.rendered = rendered
        self.signer = signer or signer_for(settings)
        self.dkim = dkim if dkim is not None else dkim_for(settings)
        self.base_url = settings.base_url
        self.mailto = settings.unsubscribe_address
        self.view_online_url = view_online_url(settings, rendered.date)
        self.frame = EditionFrame(settings, rendered.subject, rendered.date.isoformat())
        self.given = (signer, dkim)  # as asked for: what `composer_for` keeps it by
        # the link as it fills its slots (cleaned; raw in the text, escaped in the HTML)
        online = clean(self.view_online_url)
        self.constant = {value: encode_piece(value) for value in (online, html.escape(online))}

    def compose(
        self,
        recipient: Recipient,
        *,
        message_id: str | None = None,
        date: dt.datetime | None = None,
        boundary: str | None = None,
        timestamp: int | None = None,
    ) -> bytes:
        """`compose_message` for this edition: the same arguments, the same bytes."""
        https_url, mailto_url = unsubscribe_links(
            self.signer,
            base_url=self.base_url,
            mailto=self.mailto,
            email=recipient.email,
            issued=date,
        )
        slots = Slots(
            name=recipient.name,
            email=recipient.email,
            unsubscribe_url=https_url,
            view_online_url=self.view_online_url,
        )
        html_pieces, text_pieces = personalize_pieces(self.rendered, slots, dict(self.constant))
        head, middle, end = self.frame.around_parts(
            recipient,
            unsubscribe_url=https_url,
            unsubscribe_mailto=mailto_url,
            message_id=message_id,
            date=date,
            boundary=boundary,
        )
        data = b"".join((head, *text_pieces, middle, *html_pieces, end))
        return self.dkim.sign(data, timestamp=timestamp) if self.dkim else data


_COMPOSERS: list[tuple[tuple, EditionComposer]] = []  # the most recent first
_COMPOSERS_KEPT = 4
_composers_lock = threading.Lock()


def composer_for(
    rendered: RenderedEdition,
    settings: Settings,
    *,
    signer: Signer | None = None,
    dkim: Dkim | None = None,
) -> EditionComposer:
    """The composer of `rendered` with these settings, signer and DKIM signer: a kept one
    when the same were asked for lately, else a new one.

    Kept by the identity of the edition, signer and DKIM signer and by the value of
    every setting a message reads (`_message_settings`), so a changed setting (or a
    settings object made anew) can never get a message made from the old values.
    """
    key = (id(rendered), id(signer), id(dkim), _message_settings(settings))
    with _composers_lock:
        for index, (kept_key, composer) in enumerate(_COMPOSERS):
            if kept_key == key and _same(composer, rendered, signer, dkim):
                if index:
                    _COMPOSERS.insert(0, _COMPOSERS.pop(index))
                return composer
    composer = EditionComposer(rendered, settings, signer=signer, dkim=dkim)
    with _composers_lock:
        _COMPOSERS.insert(0, (key, composer))
        del _COMPOSERS[_COMPOSERS_KEPT:]
    return composer


def _same(
    composer: EditionComposer, rendered: RenderedEdition, signer: Signer | None, dkim: Dkim | None
) -> bool:
    """The ids matched; these are the very objects (an id can be reused after a free)."""
    given_signer, given_dkim = composer.given
    return composer.rendered is rendered and given_signer is signer and given_dkim is dkim


def _message_settings(settings: Settings) -> tuple:
    """Every setting a composed message depends on, as the fields hold them."""
    return (
        settings.from_name,
        settings.from_address,
        settings.name,
        settings.base_url,
        settings.unsubscribe_mailto,
        settings.cfbl_address,
        settings.feedback_sender_id,
        settings.secret_key,
        settings.previous_secret_keys,
        settings.dkim_private_key,
        settings.dkim_selector,
        settings.dkim_ed25519_key,
        settings.dkim_ed25519_selector,
        settings.dkim_domain,
    )


def view_online_url(settings: Settings, date: dt.date) -> str:
    return f"{settings.base_url}/archive/{date.isoformat()}"


def delivery_message_id(settings: Settings, rendered: RenderedEdition, delivery_id: int) -> str:
    """Stable per delivery: if a crash makes us send a message twice, clients see one."""
    date, token = _date_digits(rendered.date), rendered.slot_token[:8]
    return f"<{date}.{delivery_id}.{token}@{settings.sender_domain}>"


@lru_cache(maxsize=16)
def _date_digits(date: dt.date) -> str:
    """`20261126`: strftime was most of the cost of a Message-ID, so once per date."""
    return f"{date:%Y%m%d}"
