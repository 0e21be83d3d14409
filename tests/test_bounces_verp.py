"""The envelope sender names the delivery: VERP on every edition message (issue 12, point 2)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition, send_test
from newsletter.bounces.verp import TOKEN_MAX, BounceAddresses, bounce_addresses
from newsletter.config import MAX_BOUNCE_LOCAL_PART, load_settings
from newsletter.errors import ConfigError
from newsletter.store.schema import deliveries
from newsletter.tokens import Signer

DAY = dt.date(2026, 11, 25)
PEOPLE = ["ann@example.com", "zoe@example.org", "jose@example.net"]
SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


def test_each_edition_message_is_sent_from_the_verp_address_of_its_delivery(
    engine, settings, smtp_server
):
    settings = settings.model_copy(update={"bounce_address": "bounces@news.example.org"})
    for email in PEOPLE:
        subscriber_ops.add_subscriber(engine, email, source="test")
    prepared = prepare_edition(engine, settings, DAY)
    summary = asyncio.run(send_edition(engine, settings, prepared.stored))
    assert summary.sent == len(PEOPLE)

    with engine.connect() as conn:
        ids = dict(conn.execute(select(deliveries.c.email, deliveries.c.id)).all())
    verp = bounce_addresses(settings, Signer(SECRET))
    senders = {}
    for item in smtp_server.received:
        local, domain = item.mail_from.split("@")
        assert domain == "news.example.org" and local.startswith("bounces+")
        assert len(local) <= 64 and local == local.lower() and local[8:].isalnum()
        senders[item.rcpt_tos[0]] = verp.delivery_of(item.mail_from)
        # The From header is still FROM_ADDRESS: only the envelope changes.
        assert item.message["From"].addresses[0].addr_spec == settings.from_address
    assert senders == ids
    assert len({item.mail_from for item in smtp_server.received}) == len(PEOPLE)


def test_a_test_send_uses_the_plain_bounce_address(engine, settings, smtp_server):
    settings = settings.model_copy(update={"bounce_address": "bounces@news.example.org"})
    subscriber_ops.add_subscriber(engine, PEOPLE[0], source="test")
    prepare_edition(engine, settings, DAY)
    asyncio.run(send_test(engine, settings, DAY, "editor@elsewhere.example"))
    assert [item.mail_from for item in smtp_server.received] == ["bounces@news.example.org"]


def test_without_a_bounce_address_the_envelope_sender_is_from_address(
    engine, settings, smtp_server
):
    subscriber_ops.add_subscriber(engine, PEOPLE[0], source="test")
    prepared = prepare_edition(engine, settings, DAY)
    asyncio.run(send_edition(engine, settings, prepared.stored))
    assert [item.mail_from for item in smtp_server.received] == [settings.from_address]


def test_a_token_is_read_back_whatever_the_case_and_refused_when_altered_or_foreign():
    verp = BounceAddresses("bounces@news.example.org", Signer(SECRET))
    address = verp.for_delivery(12345)
    assert verp.delivery_of(address) == 12345
    assert verp.delivery_of(address.upper()) == 12345  # an MTA that upper-cases
    assert verp.delivery_of(f"<{address}>") == 12345
    local, domain = address.split("@")
    digit = "1" if local[-1] != "1" else "2"
    assert verp.delivery_of(f"{local[:-1]}{digit}@{domain}") is None  # mac altered
    assert verp.delivery_of(address.replace("d12345", "d12346")) is None  # another delivery
    assert verp.delivery_of("bounces@news.example.org") is None
    assert verp.delivery_of(address.replace("news.", "other.")) is None
    other = BounceAddresses(
        "bounces@news.example.org", Signer("another-secret-key-0123456789-abcdef")
    )
    assert other.delivery_of(address) is None


def test_a_token_made_before_the_secret_key_was_rotated_still_names_its_delivery():
    before = BounceAddresses("bounces@news.example.org", Signer(SECRET))
    after = BounceAddresses(
        "bounces@news.example.org", Signer("the-new-secret-key-0123456789-abcdefgh", [SECRET])
    )
    assert after.delivery_of(before.for_delivery(7)) == 7


def test_the_longest_local_part_fits_in_64_octets():
    local = "b" * MAX_BOUNCE_LOCAL_PART
    verp = BounceAddresses(f"{local}@news.example.org", Signer(SECRET))
    address = verp.for_delivery(2**63 - 1)
    assert len(address.split("@")[0]) <= 64
    assert len(address.split("@")[0]) == MAX_BOUNCE_LOCAL_PART + 1 + TOKEN_MAX


@pytest.mark.parametrize(
    "value",
    ["bounces+x@news.example.org", "bounces", "b" * (MAX_BOUNCE_LOCAL_PART + 1) + "@x.example"],
)
def test_a_bounce_address_that_cannot_carry_a_token_is_refused(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="BOUNCE_ADDRESS"):
        load_settings(bounce_address=value)
