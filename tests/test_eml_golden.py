"""The final .eml of the golden edition for a few recipients, diffed byte for byte.

`compose_message` makes exactly what a subscriber gets; with the slot token, Date,
Message-ID and MIME boundary given, its bytes are stable, so every change to a header,
a fold, an encoded-word, a soft break or an escape shows up here as a diff to review.
`UPDATE_GOLDEN=1 pytest tests/test_eml_golden.py` rewrites tests/golden/eml/; read the
diff (`git diff --text tests/golden/eml`) before committing it.

The edition is tests/test_render.py's golden edition, rendered with the real templates.
These goldens are unsigned (no DKIM key in their settings); tests/golden/eml-signed/ holds
one message signed with the fixed key in tests/data/dkim/ (RSA and Ed25519, a fixed
`t=`: both signatures are deterministic), with CFBL-Address set, so a change to what is
signed or how the DKIM-Signature is written shows up too (tests/test_dkim.py verifies it).
"""

from __future__ import annotations

import difflib
import email
import email.policy
import os
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
from mimewire import assert_crlf_only, assert_quoted_printable_wire, lf, perl_decode_qp, split_parts
from test_render import TOKEN, golden_edition, make_settings

from newsletter.compose import compose_message, delivery_message_id, view_online_url
from newsletter.dkim import Dkim, DkimKey, read_private_key
from newsletter.message import assemble_message
from newsletter.models import Recipient, RenderedEdition
from newsletter.personalize import Slots, personalize, personalize_encoded
from newsletter.render import render_edition
from newsletter.tokens import Purpose, Signer, unsubscribe_links

GOLDEN = Path(__file__).resolve().parent / "golden" / "eml"
SIGNED_GOLDEN = GOLDEN.parent / "eml-signed" / "ascii-name.eml"
DKIM_KEYS = Path(__file__).resolve().parent / "data" / "dkim"
SETTINGS = make_settings(
    from_address="news@daily.example.org",
    from_name="The Daily Brief",
    secret_key="golden-secret-key",
)
SIGNER = Signer("golden-secret-key")
WHEN = datetime(2026, 3, 6, 7, 0, 5, tzinfo=timezone(timedelta(hours=1)))

RECIPIENTS = {
    "ascii-name": Recipient(1, "ann@example.com", "Ann Smith"),
    # non-ASCII words in a name too long for one line: a folded To of encoded-words
    "non-ascii-long-name": Recipient(
        2, "zoe@example.org", "Zoë Müller-Lüdenscheidt née Ελένη Παπαδοπούλου, 日本語の名前 🎉"
    ),
    "empty-name": Recipient(3, "bob@example.net", ""),
    # an internationalized domain in its IDNA form, and a local part near its 64 limit
    "idna-long-address": Recipient(
        4,
        "first.middle.last.department.team+newsletter-daily@xn--bcher-kva.xn--caf-dma.example",
        "Jörg",
    ),
}

_rendered: RenderedEdition | None = None


def rendered() -> RenderedEdition:
    global _rendered
    if _rendered is None:
        _rendered = render_edition(golden_edition(), SETTINGS, slot_token=TOKEN)
    return _rendered


def compose(name: str, **signing) -> bytes:  # noqa: ANN003
    number = list(RECIPIENTS).index(name) + 1
    settings = signing.pop("settings", SETTINGS)
    return compose_message(
        rendered(),
        settings,
        RECIPIENTS[name],
        signer=SIGNER,
        message_id=delivery_message_id(SETTINGS, rendered(), number),
        date=WHEN,
        boundary=f"=_golden.{number}",
        **signing,
    )


def compose_signed() -> bytes:
    """The ascii-name golden with CFBL-Address, signed by the fixed test keys."""
    keys = [
        DkimKey(
            "news2026",
            "daily.example.org",
            read_private_key(DKIM_KEYS / "rsa-2048.pem", "rsa", "t"),
        ),
        DkimKey(
            "ed2026",
            "daily.example.org",
            read_private_key(DKIM_KEYS / "ed25519.pem", "ed25519", "t"),
        ),
    ]
    settings = SETTINGS.model_copy(update={"cfbl_address": "fbl@daily.example.org"})
    return compose(
        "ascii-name", settings=settings, dkim=Dkim(keys), timestamp=int(WHEN.timestamp())
    )


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def slots_of(recipient: Recipient) -> Slots:
    https_url, _ = unsubscribe_links(
        SIGNER,
        base_url=SETTINGS.base_url,
        mailto=SETTINGS.unsubscribe_address,
        email=recipient.email,
        issued=WHEN,
    )
    return Slots(
        name=recipient.name,
        email=recipient.email,
        unsubscribe_url=https_url,
        view_online_url=view_online_url(SETTINGS, rendered().date),
    )


@pytest.mark.parametrize("name", list(RECIPIENTS))
def test_golden_eml(name: str) -> None:
    assert_golden(GOLDEN / f"{name}.eml", compose(name))


def test_golden_signed_eml() -> None:
    assert_golden(SIGNED_GOLDEN, compose_signed())


def assert_golden(path: Path, data: bytes) -> None:
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
        pytest.fail(
            f"the composed message differs from {path} (if intended, rerun with "
            "UPDATE_GOLDEN=1 and review the diff):\n" + "\n".join(diff)
        )


@pytest.mark.parametrize("name", list(RECIPIENTS))
def test_each_golden_reads_back_as_the_recipient_s_edition(name: str) -> None:
    """What the golden holds is right, not only unchanged: its parts decode (by Python and
    by Perl) to what `personalize` gives without the pre-encoded pieces, and its To reads
    back the recipient."""
    recipient = RECIPIENTS[name]
    data = (GOLDEN / f"{name}.eml").read_bytes()
    page, text = personalize(rendered(), slots_of(recipient))
    msg = parse(data)

    assert msg.defects == []
    assert [a.addr_spec for a in msg["To"].addresses] == [recipient.email]
    assert lf(msg.get_body(("plain",)).get_content()) == text
    assert lf(msg.get_body(("html",)).get_content()) == page
    assert_crlf_only(data)
    assert data.isascii()
    (_, text_body), (_, html_body) = split_parts(data)
    for body in (text_body, html_body):
        assert_quoted_printable_wire(body)
    assert perl_decode_qp(text_body).decode("utf-8") == text
    assert perl_decode_qp(html_body).decode("utf-8") == page


def test_every_golden_has_a_recipient() -> None:
    """A renamed or removed recipient leaves no stale .eml behind."""
    assert sorted(path.stem for path in GOLDEN.glob("*.eml")) == sorted(RECIPIENTS)


def test_the_text_footer_has_each_link_on_its_own_line() -> None:
    """The footer once read `View online: https://…/archive/2026-03-06Unsubscribe: https://…`:
    the line break after the view-online slot came out as a soft break."""
    recipient = RECIPIENTS["ascii-name"]
    slots = slots_of(recipient)

    lines = lf(parse(compose("ascii-name")).get_body(("plain",)).get_content()).split("\n")

    assert f"View online: {slots.view_online_url}" in lines
    assert f"Unsubscribe: {slots.unsubscribe_url}" in lines
    assert "Hello Ann Smith," in lines
    assert f"This email was sent to {recipient.email}." in lines


def test_an_injected_date_stamps_the_header_and_the_links() -> None:
    data = compose("ascii-name")
    msg = parse(data)

    assert msg["Date"] == "Fri, 06 Mar 2026 07:00:05 +0100"
    assert msg.get_boundary() == "=_golden.1"
    assert msg["Message-ID"] == delivery_message_id(SETTINGS, rendered(), 1)
    token = slots_of(RECIPIENTS["ascii-name"]).unsubscribe_url.rsplit("/", 1)[1]
    assert f"/unsubscribe/{token}" in msg["List-Unsubscribe"]
    read = SIGNER.read_issued(Purpose.UNSUBSCRIBE, token, max_age=10**9)
    assert read == (RECIPIENTS["ascii-name"].email, WHEN)


@pytest.mark.parametrize("name", list(RECIPIENTS))
def test_the_composer_kept_for_a_send_makes_what_the_whole_message_builder_makes(
    name: str,
) -> None:
    """A send's messages come from a composer kept between calls, joined from pieces made
    once per edition; the same message from the slots filled whole and `assemble_message`
    is the same bytes, and so is the second message from the kept composer."""
    number = list(RECIPIENTS).index(name) + 1
    recipient = RECIPIENTS[name]
    html_qp, text_qp = personalize_encoded(rendered(), slots_of(recipient))
    whole = assemble_message(
        settings=SETTINGS,
        recipient=recipient,
        subject=rendered().subject,
        html_qp=html_qp,
        text_qp=text_qp,
        unsubscribe_url=slots_of(recipient).unsubscribe_url,
        unsubscribe_mailto=unsubscribe_links(
            SIGNER,
            base_url=SETTINGS.base_url,
            mailto=SETTINGS.unsubscribe_address,
            email=recipient.email,
            issued=WHEN,
        )[1],
        message_id=delivery_message_id(SETTINGS, rendered(), number),
        date=WHEN,
        boundary=f"=_golden.{number}",
        campaign=rendered().date.isoformat(),
    )

    assert compose(name) == whole
    assert compose(name) == whole  # from the kept composer


def test_a_setting_changed_between_messages_is_in_the_next_message() -> None:
    """The kept composer is found by the settings' values, not by the object: a setting
    changed in place never gets a message made from the old value."""
    settings = SETTINGS.model_copy()
    first = parse(compose("ascii-name", settings=settings))
    settings.cfbl_address = "fbl@daily.example.org"
    settings.from_name = "The Evening Brief"
    second = parse(compose("ascii-name", settings=settings))

    assert first["CFBL-Address"] is None
    assert second["CFBL-Address"] == "fbl@daily.example.org; report=arf"
    assert second["From"].addresses[0].display_name == "The Evening Brief"
