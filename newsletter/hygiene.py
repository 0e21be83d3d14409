"""Text hygiene, once for every stage: what may reach a subscriber, a header or a page.

Articles, subscriber names, settings and slot values come from outside. Before
any of them is shown, they pass one of these, so every stage agrees on what a
"clean" string is:

    one_line(text)       a label, a name, a subject, a slot value: no control
                         character, line break or bidi/invisible formatting mark;
                         a control that separates words (tab, a line break) and
                         runs of whitespace become one space, so the words on
                         either side stay apart; any other control is deleted
    multiline(text)      running text that keeps its line breaks (as "\\n"), with
                         the same characters removed
    has_unsafe(text)     whether `text` holds anything the two would change

Why the bidi marks: U+202E (right-to-left override) and its kin make a string
display differently from what it is ("moc.knab" shown as "bank.com"); in an
article's source line or a sender's name that is a phishing tool, never text.
Lone surrogates (JSON may carry "\\ud800") cannot be encoded to UTF-8 at all:
they become U+FFFD. A byte-order mark inside text is dropped.

Nothing here knows about articles, HTML or MIME, so every module may import it.
"""

from __future__ import annotations

import re

#: Every character `str.splitlines()` treats as a line break.
LINE_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
#: The bidi embeddings, overrides, isolates and marks, and the byte-order mark.
INVISIBLE = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
_INVISIBLE = re.compile(f"[{INVISIBLE}]")
#: Controls that separate words (tab, the form and record separators): a space.
_SPACING = re.compile(r"[\x09\x0b\x0c\x1c-\x1f]")
#: Every other C0 and C1 control and DEL: deleted, so "nul\x00here" reads "nulhere".
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNSAFE = re.compile(rf"[\x00-\x1f\x7f-\x9f\u2028\u2029{INVISIBLE}\ud800-\udfff]")


def normalize_newlines(text: str) -> str:
    """Every kind of line break (CRLF, CR, VT, FF, NEL, U+2028, ...) as one "\\n"."""
    return LINE_BREAKS.sub("\n", text)


def one_line(text: str) -> str:
    """`text` as one clean line: see the module docstring."""
    if text.isprintable() and text.isascii():  # the common case, without regexes
        return " ".join(text.split())
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", _INVISIBLE.sub("", text)))
    return " ".join(_SPACING.sub(" ", normalize_newlines(text)).split())


def multiline(text: str) -> str:
    """`text` with its line breaks as "\\n", other spacing controls as spaces, the rest of the
    controls and the marks removed."""
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", _INVISIBLE.sub("", normalize_newlines(text))))
    return _SPACING.sub(" ", text)


def has_unsafe(text: str) -> bool:
    """True when `one_line` would remove or replace something other than spaces."""
    return _UNSAFE.search(text) is not None
