"""Sealed tokens: one key per purpose, nothing readable, old links kept through a rotation."""

from __future__ import annotations

import base64
import datetime as dt
import secrets

import pytest
from itsdangerous import URLSafeTimedSerializer

from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.tokens import Purpose, Signer, derive_key, signer_for

SECRET = "k" * 8 + secrets.token_urlsafe(32)
OLD_SECRET = "an-old-secret-rotated-out-" + secrets.token_urlsafe(16)
EMAIL = "ann.example@example.com"
YEAR = 400 * 24 * 3600


def every_decoding(token: str) -> list[bytes]:
    """What a reader of the URL could decode it into: the raw text, and base64 of each part
    and of the whole at each of the four alignments."""
    found = [token.encode()]
    for piece in [token, token[1:], *token.split(".")]:
        for start in range(4):
            chunk = piece[start:]
            try:
                found.append(base64.urlsafe_b64decode(chunk + "=" * (-len(chunk) % 4)))
            except (ValueError, TypeError):
                pass
    return found


def test_a_token_shows_neither_the_address_nor_any_part_of_it():
    signer = Signer(SECRET)
    for purpose, token in [
        (Purpose.UNSUBSCRIBE, signer.sign(Purpose.UNSUBSCRIBE, EMAIL)),
        (Purpose.CONFIRM, signer.sign_confirmation(EMAIL, secrets.token_hex(16))),
    ]:
        for decoded in every_decoding(token):
            lowered = decoded.lower()
            assert b"ann.example" not in lowered and b"example.com" not in lowered, purpose


def test_the_old_format_did_show_it():
    """What the issue found: the address in readable base64, in every access log."""
    old = URLSafeTimedSerializer(SECRET, salt="newsletter.unsubscribe").dumps(EMAIL)
    assert any(EMAIL.encode() in decoded for decoded in every_decoding(old))


def test_same_address_and_time_give_the_same_token_and_it_reads_back():
    signer = Signer(SECRET)
    when = dt.datetime(2026, 3, 6, 7, 0, 5, tzinfo=dt.UTC)
    one = signer.sign(Purpose.UNSUBSCRIBE, "Ann.Example@Example.com", issued=when)
    assert one == signer.sign(Purpose.UNSUBSCRIBE, EMAIL, issued=when)
    assert signer.read_issued(Purpose.UNSUBSCRIBE, one, max_age=10**9) == (EMAIL, when)
    assert one != signer.sign(Purpose.UNSUBSCRIBE, EMAIL, issued=when + dt.timedelta(seconds=1))


def test_each_purpose_has_its_own_key_and_a_token_of_one_is_refused_as_another():
    keys = {purpose: derive_key(SECRET, purpose) for purpose in Purpose}
    assert len(set(keys.values())) == len(Purpose)
    assert SECRET.encode() not in keys.values()
    signer = Signer(SECRET)
    unsubscribe = signer.sign(Purpose.UNSUBSCRIBE, EMAIL)
    confirm = signer.sign_confirmation(EMAIL, secrets.token_hex(16))
    with pytest.raises(InputError, match="not valid"):
        signer.read_confirmation(unsubscribe, max_age=YEAR)
    with pytest.raises(InputError, match="not valid"):
        signer.read(Purpose.UNSUBSCRIBE, confirm, max_age=YEAR)
    assert signer.key(Purpose.SESSION) != signer.key(Purpose.FORM)


def test_a_confirmation_token_carries_its_nonce():
    signer = Signer(SECRET)
    nonce = secrets.token_hex(16)
    token = signer.sign_confirmation(EMAIL, nonce)
    assert signer.read_confirmation(token, max_age=3600) == (EMAIL, nonce)
    with pytest.raises(ValueError):
        signer.sign_confirmation(EMAIL, "abcd")


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # the tag or text altered
        lambda t: t[:20],  # cut short
        lambda t: t + "A",  # one more character
        lambda t: "s",  # nothing
        lambda t: "s" + "A" * 3000,  # far too long
        lambda t: "x" + t[1:],  # not our version
        lambda t: t[:9] + "!!!!" + t[9:],  # not base64 (a lax decoder would skip it)
    ],
)
def test_an_altered_token_is_refused(change):
    signer = Signer(SECRET)
    token = signer.sign(Purpose.UNSUBSCRIBE, EMAIL)
    with pytest.raises(InputError):
        signer.read(Purpose.UNSUBSCRIBE, change(token), max_age=YEAR)


def test_age_limits_and_a_token_from_the_future():
    signer = Signer(SECRET)
    now = dt.datetime.now(dt.UTC)
    old = signer.sign(Purpose.UNSUBSCRIBE, EMAIL, issued=now - dt.timedelta(days=401))
    with pytest.raises(InputError, match="expired"):
        signer.read(Purpose.UNSUBSCRIBE, old, max_age=YEAR)
    inside = signer.sign(Purpose.UNSUBSCRIBE, EMAIL, issued=now - dt.timedelta(days=399))
    assert signer.read(Purpose.UNSUBSCRIBE, inside, max_age=YEAR) == EMAIL
    future = signer.sign(Purpose.UNSUBSCRIBE, EMAIL, issued=now + dt.timedelta(hours=1))
    with pytest.raises(InputError, match="not valid"):
        signer.read(Purpose.UNSUBSCRIBE, future, max_age=YEAR)


def test_a_rotated_secret_keeps_old_links_working_only_while_it_is_listed():
    token = Signer(OLD_SECRET).sign(Purpose.UNSUBSCRIBE, EMAIL)
    assert Signer(SECRET, (OLD_SECRET,)).read(Purpose.UNSUBSCRIBE, token, max_age=YEAR) == EMAIL
    with pytest.raises(InputError, match="not valid"):
        Signer(SECRET).read(Purpose.UNSUBSCRIBE, token, max_age=YEAR)
    # New tokens are always issued under the current secret.
    fresh = Signer(SECRET, (OLD_SECRET,)).sign(Purpose.UNSUBSCRIBE, EMAIL)
    assert Signer(SECRET).read(Purpose.UNSUBSCRIBE, fresh, max_age=YEAR) == EMAIL
    # Session and form keys come from the current secret only: a rotation ends sessions.
    assert Signer(SECRET, (OLD_SECRET,)).key(Purpose.SESSION) == Signer(SECRET).key(Purpose.SESSION)


def test_unsubscribe_links_sent_before_sealed_tokens_still_unsubscribe():
    legacy = URLSafeTimedSerializer(SECRET, salt="newsletter.unsubscribe").dumps(EMAIL)
    assert Signer(SECRET).read(Purpose.UNSUBSCRIBE, legacy, max_age=YEAR) == EMAIL
    rotated = URLSafeTimedSerializer(OLD_SECRET, salt="newsletter.unsubscribe").dumps(EMAIL)
    assert Signer(SECRET, (OLD_SECRET,)).read(Purpose.UNSUBSCRIBE, rotated, max_age=YEAR) == EMAIL
    forged = URLSafeTimedSerializer("someone-else", salt="newsletter.unsubscribe").dumps(EMAIL)
    with pytest.raises(InputError):
        Signer(SECRET).read(Purpose.UNSUBSCRIBE, forged, max_age=YEAR)
    # ...but never as a confirmation: those need the nonce only sealed tokens carry.
    old_confirm = URLSafeTimedSerializer(SECRET, salt="newsletter.confirm").dumps(EMAIL)
    with pytest.raises(InputError):
        Signer(SECRET).read_confirmation(old_confirm, max_age=YEAR)


def test_the_setting_lists_previous_secrets():
    settings = Settings(
        secret_key=SECRET, previous_secret_keys=f" {OLD_SECRET}, second-old-secret  third "
    )
    assert settings.previous_secrets == (OLD_SECRET, "second-old-secret", "third")
    token = Signer("second-old-secret").sign(Purpose.UNSUBSCRIBE, EMAIL)
    assert signer_for(settings).read(Purpose.UNSUBSCRIBE, token, max_age=YEAR) == EMAIL
