"""Two streams: editions are bulk mail with list headers and their own Feedback-ID;
one-to-one mail (the confirmation) is transactional, with none of the list headers and
a Feedback-ID of its own, so complaints are counted apart. Checked on what the real
send and sign-up put on the wire of the in-process aiosmtpd."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest

from newsletter import signup
from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.errors import InputError
from newsletter.message import cfbl_header, feedback_id_header
from newsletter.tokens import signer_for

DAY = dt.date(2026, 11, 25)
FIELD = re.compile(r"[A-Za-z0-9._-]+")  # stable ASCII, no colon, no space


def header_lines(data: bytes) -> list[str]:
    return data.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")


def only(lines: list[str], name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith(name + ":")]


def test_an_edition_and_a_confirmation_are_two_streams(engine, settings, smtp_server):
    subscriber_ops.add_subscriber(engine, "ann@example.com", name="Ann", source="test")
    prepared = prepare_edition(engine, settings, DAY)
    asyncio.run(send_edition(engine, settings, prepared.stored))
    asyncio.run(
        signup.sign_up(engine, settings, signer_for(settings), "new@example.com", client="::1")
    )

    edition, confirmation = (header_lines(item.data) for item in smtp_server.received)
    (edition_id,) = only(edition, "Feedback-ID")
    (confirmation_id,) = only(confirmation, "Feedback-ID")
    sender = "dailyexampleorg"  # made from news@daily.example.org: 5 to 15 characters
    assert edition_id == f"2026-11-25:{settings.list_id}:edition:{sender}"
    assert confirmation_id == f"confirmation:{settings.list_id}:transactional:{sender}"
    for value in (edition_id, confirmation_id):
        fields = value.split(":")
        assert len(fields) == 4 and all(FIELD.fullmatch(field) for field in fields)
        assert "@" not in value  # nothing names a recipient
    for bulk in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Precedence"):
        assert only(edition, bulk) and not only(confirmation, bulk)
    assert not only(edition, "CFBL-Address")  # not configured


def test_cfbl_address_is_on_editions_only_when_set(engine, settings, smtp_server):
    settings = settings.model_copy(update={"cfbl_address": "fbl@daily.example.org"})
    subscriber_ops.add_subscriber(engine, "ann@example.com", name="Ann", source="test")
    prepared = prepare_edition(engine, settings, DAY)
    asyncio.run(send_edition(engine, settings, prepared.stored))
    asyncio.run(
        signup.sign_up(engine, settings, signer_for(settings), "new@example.com", client="::1")
    )

    edition, confirmation = (header_lines(item.data) for item in smtp_server.received)
    assert only(edition, "CFBL-Address") == ["fbl@daily.example.org; report=arf"]
    assert not only(confirmation, "CFBL-Address")


@pytest.mark.parametrize(
    "campaign", ["2026-11-25:x", "a b", "caf\u00e9", "x\r\nBcc: victim@example.com", ""]
)
def test_a_feedback_id_field_that_is_not_plain_ascii_is_refused(settings, campaign):
    with pytest.raises(InputError):
        feedback_id_header(settings, campaign, "edition")


def test_a_cfbl_address_cannot_carry_a_header_of_its_own():
    with pytest.raises(InputError):
        cfbl_header("fbl@daily.example.org\r\nBcc: victim@example.com")
