"""Fill one recipient's slots in a rendered edition: cheap, pure, escaped correctly.

A `RenderedEdition` holds slot markers (see `render.slot_marker`). Its HTML and
text are split on those markers once, the first time the edition is
personalized; each recipient then costs a few escapes and one `str.join` per
part: no regex, no Jinja, no premailer.

Values are escaped for where they land: `html.escape(quote=True)` in the HTML
part (safe in text and in attributes alike), raw in the text part. Control
characters, line breaks and bidi marks are removed from every value in both
parts (`hygiene.one_line`), so a name can never start a new line or header-like text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

from newsletter.config import Settings
from newsletter.hygiene import one_line
from newsletter.models import RenderedEdition
from newsletter.quoted_printable import encoded_pieces, fill_encoded
from newsletter.render import SLOT_NAMES, slot_marker


def clean(value: str) -> str:
    """A slot value as one clean line (`hygiene.one_line`): no control character, line break
    or bidi mark can reach a greeting, a link or the text part."""
    return one_line(value)


@dataclass(frozen=True)
class Slots:
    """One recipient's values for the slots an edition was rendered with.

    `greeting` and `sent_to` are derived so that templates never need an
    `{% if %}` on a per-recipient value (they are rendered once for everybody).
    """

    name: str
    email: str
    unsubscribe_url: str
    view_online_url: str

    @property
    def greeting(self) -> str:
        """`Hello Ann,` when a name is known, `Hello,` otherwise."""
        name = " ".join(clean(self.name).split())
        return f"Hello {name}," if name else "Hello,"

    @property
    def sent_to(self) -> str:
        """`This email was sent to ann@example.com.`, or empty (archive, previews)."""
        email = clean(self.email).strip()
        return f"This email was sent to {email}." if email else ""


def personalize(rendered: RenderedEdition, slots: Slots) -> tuple[str, str]:
    """The (html, text) of `rendered` for one recipient, every marker replaced."""
    html_parts, text_parts = _split(rendered)
    raw = {slot: clean(getattr(slots, slot)) for slot in SLOT_NAMES}
    escaped = {slot: html.escape(value, quote=True) for slot, value in raw.items()}
    return _fill(html_parts, escaped), _fill(text_parts, raw)


def personalize_encoded(rendered: RenderedEdition, slots: Slots) -> tuple[bytes, bytes]:
    """Like `personalize`, but the quoted-printable bytes of each part, ready for MIME.

    The fast path of a send: the edition's literal text is encoded once, and per
    recipient only the few slot values are (see `quoted_printable.fill_encoded`).
    """
    html_parts, text_parts = _split(rendered)
    raw = {slot: clean(getattr(slots, slot)) for slot in SLOT_NAMES}
    escaped = {slot: html.escape(value, quote=True) for slot, value in raw.items()}
    return fill_encoded(html_parts, escaped), fill_encoded(text_parts, raw)


def personalize_pieces(
    rendered: RenderedEdition, slots: Slots, encoded: dict[str, bytes] | None = None
) -> tuple[list[bytes], list[bytes]]:
    """`personalize_encoded` before the joins: (html pieces, text pieces), for a message
    joined in one go (`message.EditionFrame`). `encoded` is shared by both parts (an
    address fills a slot in each) and may hold the edition's constant values already
    encoded (`quoted_printable.encoded_pieces`)."""
    html_parts, text_parts = _split(rendered)
    raw = {slot: clean(getattr(slots, slot)) for slot in SLOT_NAMES}
    escaped = {slot: html.escape(value, quote=True) for slot, value in raw.items()}
    if encoded is None:
        encoded = {}
    return encoded_pieces(html_parts, escaped, encoded), encoded_pieces(text_parts, raw, encoded)


def neutral_slots(settings: Settings, *, view_online_url: str) -> Slots:
    """Slots for a copy nobody in particular gets: the web archive and editor previews.

    The unsubscribe link goes to the site's unsubscribe page, where a reader
    enters an address, since there is no subscriber to sign a link for.
    """
    return Slots(
        name="",
        email="",
        unsubscribe_url=f"{settings.base_url.rstrip('/')}/unsubscribe",
        view_online_url=view_online_url,
    )


# The split pieces alternate literal text and slot names: [text, slot, text, ..., text].
_Parts = tuple[str, ...]


def _fill(parts: _Parts, values: dict[str, str]) -> str:
    pieces = list(parts)
    for index in range(1, len(pieces), 2):
        pieces[index] = values[pieces[index]]
    return "".join(pieces)


@lru_cache(maxsize=8)
def _split(rendered: RenderedEdition) -> tuple[_Parts, _Parts]:
    """Split both parts on the markers, once per rendered edition.

    Keyed by the edition itself (a frozen dataclass: its hash is computed from
    strings that cache their own hash, and a lookup with the same object is an
    identity check), so a send of 100,000 messages splits twice in all.
    """
    slot_by_marker = {slot_marker(rendered.slot_token, slot): slot for slot in SLOT_NAMES}
    # one alternation, longest marker first, so no marker can match a prefix of another
    alternatives = sorted(slot_by_marker, key=len, reverse=True)
    pattern = re.compile("(" + "|".join(re.escape(marker) for marker in alternatives) + ")")

    def parts(document: str) -> _Parts:
        pieces = pattern.split(document)  # captured markers land at the odd indexes
        pieces[1::2] = [slot_by_marker[marker] for marker in pieces[1::2]]
        return tuple(pieces)

    return parts(rendered.html), parts(rendered.text)
