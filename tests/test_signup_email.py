"""The sign-up's confirmation email, byte for byte: a golden .eml, and what it must hold.

With Date, Message-ID, boundary and the link's issue time given, its bytes are stable, so
any change to a header, a fold or the wording shows up as a diff to review.
`UPDATE_GOLDEN=1 pytest tests/test_signup_email.py` rewrites
tests/golden/confirmation/; read the diff before committing it.
"""

from __future__ import annotations

import difflib
import email
import email.policy
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import spam_score
from mimewire import assert_crlf_only, assert_quoted_printable_wire, lf, split_parts
from test_render import make_settings

from newsletter.errors import InputError
from newsletter.signup import confirm_url, confirmation_message, read_link
from newsletter.tokens import Signer

GOLDEN = Path(__file__).resolve().parent / "golden" / "confirmation"
SETTINGS = make_settings(
    from_address="news@daily.example.org",
    from_name="The Daily Brief",
    secret_key="golden-secret-key",
)
SIGNER = Signer("golden-secret-key")
WHEN = datetime(2026, 3, 6, 7, 0, 5, tzinfo=timezone(timedelta(hours=1)))
NONCE = "0123456789abcdef0123456789abcdef"
ADDRESSES = {
    "plain": "ann@example.com",
    # an internationalized domain in its IDNA form, and a local part near its 64 limit
    "idna-long-address": (
        "first.middle.last.department.team+newsletter-daily@xn--bcher-kva.xn--caf-dma.example"
    ),
}


def link(address: str) -> str:
    token = SIGNER.sign_confirmation(address, NONCE, issued=WHEN)
    return f"{SETTINGS.base_url}/confirm/{token}"


def compose(name: str) -> bytes:
    address = ADDRESSES[name]
    return confirmation_message(
        SETTINGS,
        email=address,
        link=link(address),
        date=WHEN,
        message_id=f"<confirm.{name}@daily.example.org>",
        boundary=f"=_golden.{name}",
    )


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


@pytest.mark.parametrize("name", list(ADDRESSES))
def test_golden_confirmation(name: str) -> None:
    data = compose(name)
    path = GOLDEN / f"{name}.eml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 and review it"
    expected = path.read_bytes()
    if data != expected:
        diff = difflib.unified_diff(
            expected.decode("ascii", "replace").split("\r\n"),
            data.decode("ascii", "replace").split("\r\n"),
            str(path),
            "composed",
            lineterm="",
        )
        pytest.fail(f"the confirmation differs from {path}:\n" + "\n".join(diff))


@pytest.mark.parametrize("name", list(ADDRESSES))
def test_the_golden_is_small_plain_and_well_formed(name: str) -> None:
    """Read back from the golden file: one recipient and no display name, the newsletter's
    own words, the link in both parts, no bulk-mail headers, and the wire rules kept."""
    address = ADDRESSES[name]
    data = (GOLDEN / f"{name}.eml").read_bytes()
    msg = parse(data)

    assert msg.defects == []
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [("", address)]
    assert msg["From"].addresses[0].display_name == "The Daily Brief"
    assert msg["Subject"] == "Confirm your subscription to The Daily Brief"
    assert msg["Date"] == "Fri, 06 Mar 2026 07:00:05 +0100"
    assert msg["Auto-Submitted"] == "auto-generated"
    for bulk in ("List-Unsubscribe", "List-Id", "Precedence"):
        assert bulk not in msg
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]
    text = lf(msg.get_body(("plain",)).get_content())
    page = msg.get_body(("html",)).get_content()
    assert text.startswith("Hello,\n\nPlease confirm that you want to receive The Daily Brief")
    assert link(address) in text.split("\n") and f'href="{link(address)}"' in page
    assert address not in text and address not in page  # the To: shows it; the body need not
    assert len(data) < 4000
    assert_crlf_only(data)
    assert data.isascii()
    for _, body in split_parts(data):
        assert_quoted_printable_wire(body)


def test_the_link_reads_back_to_the_address_and_nonce() -> None:
    address = ADDRESSES["plain"]
    token = link(address).rsplit("/", 1)[1]
    settings = SETTINGS.model_copy(update={"signup_expiry_hours": 10**6})
    assert read_link(settings, SIGNER, token) == (address, NONCE)
    assert confirm_url(settings, SIGNER, address, NONCE).startswith(
        f"{SETTINGS.base_url}/confirm/s"
    )


@pytest.mark.parametrize(
    "address",
    ["ann@example.com\r\nBcc: all@example.net", "ann@example.com, eve@evil.example", "ann"],
)
def test_an_address_that_cannot_be_written_safely_is_refused(address: str) -> None:
    with pytest.raises(InputError):
        confirmation_message(SETTINGS, email=address, link=link("ann@example.com"))


def test_the_confirmation_scores_low_with_spamassassin(tmp_path) -> None:
    data = confirmation_message(SETTINGS, email="ann@example.com", link=link("ann@example.com"))
    score, hits = spam_score(data, tmp_path)
    assert score < 2.0, f"SpamAssassin score {score}: {hits}"
