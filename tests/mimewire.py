"""Checks of a message's bytes shared by the message, personalize and .eml tests.

`assert_quoted_printable_wire` states the rules every encoded body line keeps;
`perl_decode_qp` decodes with Perl's core MIME::QuotedPrint, a decoder that shares no
code with Python's, so a body both read alike is not an artefact of one library;
`split_parts` cuts a multipart/alternative message by hand, without the `email` parser.
The hypothesis strategies make text that stresses the encoder where pieces meet.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from hypothesis import strategies as st

#: Fragments that stress the encoder where pieces meet: line breaks, blanks a soft break
#: could follow, "=" and "=20" (escape-like text), dots and "From " that could start a
#: line, non-ASCII (multi-byte escapes a cut must not split), `<&>` for the HTML escapes.
SPECIAL_FRAGMENTS = (
    "\n",
    "\n\n",
    " ",
    "  ",
    "\t",
    " \n",
    "=",
    "==",
    "=20",
    "=\n",
    ".",
    "..",
    ".\n",
    "\n.",
    "From ",
    "From",
    "\nFrom ",
    ">From ",
    "é",
    "€",
    "日本",
    "🎉",
    "\u00a0",
    "<&>",
)

#: One fragment: a special one, any text without CR, or a run that pushes whatever comes
#: next to any column of a 76-column line (60-80 lands it around the soft-break column).
fragment = st.one_of(
    st.sampled_from(SPECIAL_FRAGMENTS),
    st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=12),
    st.integers(1, 160).map(lambda n: "a" * n),
    st.integers(60, 80).map(lambda n: "b" * n),
)
#: A literal run of text (or a raw slot value): a few fragments, often empty.
piece = st.lists(fragment, max_size=8).map("".join)

_QP_LINE_RE = re.compile(rb"(?:[\t !-<>-~]|=[0-9A-F]{2})*=?")


def assert_quoted_printable_wire(encoded: bytes) -> None:
    """`encoded` is a quoted-printable body every reader, relay and mbox handles alike.

    RFC 2045 §6.7: lines of at most 76; "=" only as a whole "=XX" escape or a final soft
    break (so no escape is split across lines or pieces); no whitespace at a line's end,
    nor right before a soft break (some decoders strip it there). No line starts with "."
    (a relay that forgets dot-stuffing) or "From " (mbox). CRLF line ends only.
    """
    assert_crlf_only(encoded)
    for line in encoded.split(b"\r\n"):
        assert len(line) <= 76, line
        assert _QP_LINE_RE.fullmatch(line), line
        assert not line.startswith((b".", b"From ")), line
        assert not line.endswith((b" ", b"\t", b" =", b"\t=")), line


def assert_crlf_only(data: bytes) -> None:
    assert b"\n" not in data.replace(b"\r\n", b""), "a bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "a bare CR"


def split_parts(data: bytes) -> list[tuple[bytes, bytes]]:
    """(headers, body) of each part of a multipart message, cut at its boundary by hand."""
    match = re.search(rb'boundary="([^"]+)"', data.split(b"\r\n\r\n", 1)[0])
    assert match, "no boundary"
    delimiter = b"\r\n--" + match.group(1)
    sections = data.split(delimiter)
    assert sections[-1] == b"--\r\n", "the message does not end with the close delimiter"
    parts = []
    for section in sections[1:-1]:
        assert section.startswith(b"\r\n")
        headers, body = section[2:].split(b"\r\n\r\n", 1)
        parts.append((headers, body))
    return parts


def perl_decode_qp(encoded: bytes) -> bytes:
    """`encoded` decoded by Perl's MIME::QuotedPrint (core Perl), line ends as LF."""
    if shutil.which("perl") is None:
        pytest.skip("perl is not installed (scripts/install-system-deps.sh installs it)")
    script = "binmode STDIN; binmode STDOUT; local $/; print decode_qp(<STDIN>)"
    done = subprocess.run(
        ["perl", "-MMIME::QuotedPrint", "-e", script],
        input=encoded,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return done.stdout.replace(b"\r\n", b"\n")


def lf(text: str) -> str:
    """`text` with every CRLF and CR as LF: how line breaks are compared."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
