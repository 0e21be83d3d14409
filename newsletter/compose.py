"""One recipient's message from a stored edition: signed links, filled slots, MIME bytes,
and the DKIM signature over them.

Used by the send loop, test sends and previews alike, so an editor's preview
and a subscriber's copy are made by the same code.
"""

from __future__ import annotations

import datetime as dt

from newsletter.config import Settings
from newsletter.dkim import Dkim, dkim_for
from newsletter.message import assemble_message
from newsletter.models import Recipient, RenderedEdition
from newsletter.personalize import Slots, personalize_encoded
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
    """
    signer = signer or signer_for(settings)
    https_url, mailto_url = unsubscribe_links(
        signer,
        base_url=settings.base_url,
        mailto=settings.unsubscribe_address,
        email=recipient.email,
        issued=date,
    )
    slots = Slots(
        name=recipient.name,
        email=recipient.email,
        unsubscribe_url=https_url,
        view_online_url=view_online_url(settings, rendered.date),
    )
    html_qp, text_qp = personalize_encoded(rendered, slots)
    data = assemble_message(
        settings=settings,
        recipient=recipient,
        subject=rendered.subject,
        html_qp=html_qp,
        text_qp=text_qp,
        unsubscribe_url=https_url,
        unsubscribe_mailto=mailto_url,
        message_id=message_id,
        date=date,
        boundary=boundary,
        campaign=rendered.date.isoformat(),
    )
    return (dkim if dkim is not None else dkim_for(settings)).sign(data, timestamp=timestamp)


def view_online_url(settings: Settings, date: dt.date) -> str:
    return f"{settings.base_url}/archive/{date.isoformat()}"


def delivery_message_id(settings: Settings, rendered: RenderedEdition, delivery_id: int) -> str:
    """Stable per delivery: if a crash makes us send a message twice, clients see one."""
    return (
        f"<{rendered.date:%Y%m%d}.{delivery_id}.{rendered.slot_token[:8]}@{settings.sender_domain}>"
    )
