"""DKIM signatures checked by verifiers that did not make them.

Perl's Mail::DKIM (Debian's libmail-dkim-perl, through tests/dkimverify.pl, the key
lookup answered from a file) checks what a real send put on the wire of the in-process
aiosmtpd: an edition, a test send, a confirmation. The installed Mail::DKIM
(1.20230212) has no Ed25519 (it reports the signature "invalid (unsupported
algorithm)"), so the Ed25519 signature is checked by dkimpy, a second independent
verifier (test-only dependency), which checks the RSA one too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import dkim as dkimpy
import pytest
from conftest import Cli

from newsletter import signup
from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition, send_test
from newsletter.config import load_settings
from newsletter.dkim import (
    Dkim,
    DkimKey,
    dkim_for,
    public_record,
    read_private_key,
    relaxed_body,
    relaxed_header,
)
from newsletter.errors import ConfigError
from newsletter.tokens import signer_for

HERE = Path(__file__).resolve().parent
KEYS = HERE / "data" / "dkim"
RSA_KEY = KEYS / "rsa-2048.pem"
ED_KEY = KEYS / "ed25519.pem"
DOMAIN = "daily.example.org"
DAY = dt.date(2026, 11, 25)
#: RFC 8058 §4 and the issue: these must be in h= whenever the message has them.
MUST_SIGN = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
)


def records(selector: str = "news2026", ed_selector: str = "ed2026") -> dict[str, str]:
    return {
        f"{selector}._domainkey.{DOMAIN}": public_record(read_private_key(RSA_KEY, "rsa", "t")),
        f"{ed_selector}._domainkey.{DOMAIN}": public_record(
            read_private_key(ED_KEY, "ed25519", "t")
        ),
    }


def mail_dkim(data: bytes, tmp_path: Path, keys: dict[str, str] | None = None) -> list[str]:
    """Mail::DKIM's verdict lines: one per signature, then `result: <overall>`."""
    perl = shutil.which("perl")
    if perl is None or subprocess.run([perl, "-MMail::DKIM::Verifier", "-e1"]).returncode:
        pytest.skip("Mail::DKIM is not installed (scripts/install-system-deps.sh)")
    table = tmp_path / "dkim-keys.txt"
    table.write_text("".join(f"{name} {record}\n" for name, record in (keys or records()).items()))
    result = subprocess.run(
        [perl, str(HERE / "dkimverify.pl"), str(table)],
        input=data,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return result.stdout.decode().splitlines()


def dkimpy_verifies(data: bytes, index: int, keys: dict[str, str] | None = None) -> bool:
    table = keys or records()

    def lookup(name: bytes | str, timeout: int = 5) -> bytes:
        text = name.decode() if isinstance(name, bytes) else name
        return table.get(text.rstrip("."), "").encode()

    try:
        return bool(dkimpy.DKIM(data).verify(idx=index, dnsfunc=lookup))
    except dkimpy.ValidationError:  # a body hash mismatch is raised, not returned
        return False


def signed_settings(settings, **more):  # noqa: ANN001, ANN201
    return settings.model_copy(
        update={
            "dkim_private_key": RSA_KEY,
            "dkim_selector": "news2026",
            "dkim_ed25519_key": ED_KEY,
            "dkim_ed25519_selector": "ed2026",
            **more,
        }
    )


def signature_tags(data: bytes, index: int = 0) -> dict[str, str]:
    headers = data.split(b"\r\n\r\n", 1)[0].decode()
    fields = re.findall(r"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", headers, re.MULTILINE)
    value = re.sub(r"\s+", "", fields[index])
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


def assert_both_signatures_verify(data: bytes, tmp_path: Path) -> None:
    verdict = mail_dkim(data, tmp_path)
    assert verdict[0] == f"pass d={DOMAIN} s=news2026 a=rsa-sha256 pass", verdict
    assert verdict[1].startswith(f"invalid d={DOMAIN} s=ed2026 a=ed25519-sha256"), verdict
    assert verdict[-1] == "result: pass"
    assert dkimpy_verifies(data, 0) and dkimpy_verifies(data, 1)
    names = signature_tags(data)["h"].split(":")
    present = {
        line.split(":", 1)[0].lower()
        for line in data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        if line and line[0] not in " \t"
    }
    for name in MUST_SIGN:
        if name in present:
            assert names.count(name) == 2, (name, names)  # present once, over-signed once


# The real sends, checked on what the relay received


def test_an_edition_as_sent_verifies_rsa_with_mail_dkim_and_both_with_dkimpy(
    engine, settings, smtp_server, tmp_path
):
    settings = signed_settings(settings)
    for address, name in (("ann@example.com", "Ann Lee"), ("zoe@example.org", "Zoë Müller")):
        subscriber_ops.add_subscriber(engine, address, name=name, source="test")
    prepared = prepare_edition(engine, settings, DAY)

    summary = asyncio.run(send_edition(engine, settings, prepared.stored))

    assert summary.sent == 2 and len(smtp_server.received) == 2
    for item in smtp_server.received:
        assert item.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
        assert_both_signatures_verify(item.data, tmp_path)
        names = signature_tags(item.data)["h"].split(":")
        assert {"list-unsubscribe", "list-unsubscribe-post", "list-id"} <= set(names)


def test_a_test_send_verifies(engine, settings, smtp_server, tmp_path):
    settings = signed_settings(settings)

    outcome = asyncio.run(send_test(engine, settings, DAY, "editor@example.com", "Ed"))

    assert outcome.result.outcome.value == "sent"
    (item,) = smtp_server.received
    assert_both_signatures_verify(item.data, tmp_path)


def test_a_confirmation_email_verifies(engine, settings, smtp_server, tmp_path):
    settings = signed_settings(settings)

    result = asyncio.run(
        signup.sign_up(engine, settings, signer_for(settings), "new@example.com", client="::1")
    )

    assert result.outcome.value == "sent"
    (item,) = smtp_server.received
    assert b"\r\nList-Unsubscribe:" not in item.data
    assert_both_signatures_verify(item.data, tmp_path)


def test_without_a_key_nothing_is_signed(engine, settings, smtp_server):
    asyncio.run(send_test(engine, settings, DAY, "editor@example.com"))

    (item,) = smtp_server.received
    assert b"DKIM-Signature" not in item.data


# What breaks a signature, and what does not

SIGNER = Dkim(
    [
        DkimKey("news2026", DOMAIN, read_private_key(RSA_KEY, "rsa", "t")),
        DkimKey("ed2026", DOMAIN, read_private_key(ED_KEY, "ed25519", "t")),
    ]
)


def golden_signed() -> bytes:
    return SIGNER.sign((HERE / "golden" / "eml" / "ascii-name.eml").read_bytes())


def _add_on_top(data: bytes, line: bytes) -> bytes:
    return line + b"\r\n" + data


def _add_below_signatures(data: bytes, line: bytes) -> bytes:
    at = data.index(b"\r\nFrom: ") + 2
    return data[:at] + line + b"\r\n" + data[at:]


TAMPERING = {
    "a body character": lambda d: d.replace(b"Hello Ann Smith,", b"Hello Ann Smyth,", 1),
    "a line added to the body": lambda d: d.replace(b"--=_golden.1--", b"x\r\n--=_golden.1--"),
    "the Subject": lambda d: re.sub(rb"\r\nSubject: [^\r]*", b"\r\nSubject: Win a prize", d),
    "the List-Unsubscribe URL": lambda d: d.replace(
        b"<https://news.example.com/unsub", b"<https://evil.example/unsub", 1
    ),
    "a second From above": lambda d: _add_below_signatures(d, b"From: <boss@daily.example.org>"),
    "a second Subject": lambda d: _add_below_signatures(d, b"Subject: Urgent"),
    "a Reply-To": lambda d: _add_below_signatures(d, b"Reply-To: <thief@evil.example>"),
}


@pytest.mark.parametrize("change", list(TAMPERING))
def test_a_changed_body_or_signed_header_fails_both_verifiers(change, tmp_path):
    data = golden_signed()
    changed = TAMPERING[change](data)
    assert changed != data

    verdict = mail_dkim(changed, tmp_path)

    assert verdict[0].startswith("fail "), verdict
    assert verdict[-1] == "result: fail"
    assert not dkimpy_verifies(changed, 0) and not dkimpy_verifies(changed, 1)


def test_what_relays_add_leaves_the_signature_valid(tmp_path):
    """The control for the test above: a Received line on top and refolded whitespace in a
    signed header (what relaxed canonicalization is for) still verify."""
    data = _add_on_top(golden_signed(), b"Received: from relay.example (127.0.0.1) by mx")
    data = data.replace(b"\r\nMIME-Version: 1.0", b"\r\nMIME-Version:   1.0 ", 1)

    assert mail_dkim(data, tmp_path)[-1] == "result: pass"
    assert dkimpy_verifies(data, 0) and dkimpy_verifies(data, 1)


def test_a_key_not_the_published_one_fails(tmp_path):
    other = read_private_key(KEYS / "other-rsa-2048.pem", "rsa", "t")
    keys = records() | {f"news2026._domainkey.{DOMAIN}": public_record(other)}

    assert mail_dkim(golden_signed(), tmp_path, keys)[0].startswith("fail ")


# The header and the canonical forms


def test_the_signature_header_is_folded_within_78_columns_and_signs_no_length():
    data = golden_signed()
    head = data.split(b"\r\nFrom: ", 1)[0]

    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    tags = signature_tags(data)
    assert tags["c"] == "relaxed/relaxed" and tags["d"] == DOMAIN and "l" not in tags
    assert signature_tags(data, 1)["a"] == "ed25519-sha256"


def test_relaxed_canonical_forms_follow_rfc_6376_examples():
    """RFC 6376 §3.4.6's example, header and body."""
    assert relaxed_header(b"A: X") == b"a:X\r\n"
    assert relaxed_header(b"B : Y\t\r\n\tZ  ") == b"b:Y Z\r\n"
    assert relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert relaxed_body(b"") == b"" and relaxed_body(b"\r\n\r\n") == b""
    assert relaxed_body(b"no end") == b"no end\r\n"


def test_bare_line_feeds_are_signed_as_the_crlf_the_relay_sends(tmp_path):
    data = b"From: <a@daily.example.org>\nTo: <b@example.com>\nSubject: hi\n\nbody\n"

    signed = SIGNER.sign(data)

    assert b"\n" not in signed.replace(b"\r\n", b"")
    assert mail_dkim(signed, tmp_path)[-1] == "result: pass"


def test_public_record_is_the_txt_record_of_the_key():
    rsa = records()[f"news2026._domainkey.{DOMAIN}"]
    ed = records()[f"ed2026._domainkey.{DOMAIN}"]

    assert rsa.startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", ed)


# Settings: the keys are read when settings load; a bad one is one line with the fix


def _load(tmp_path, monkeypatch, **values):  # noqa: ANN001, ANN003, ANN202
    monkeypatch.chdir(tmp_path)
    return load_settings(from_address=f"news@{DOMAIN}", **values)


@pytest.mark.parametrize(
    ("values", "where", "says"),
    [
        ({"dkim_private_key": "/nowhere/dkim.pem"}, "DKIM_PRIVATE_KEY", "openssl genpkey"),
        ({"dkim_private_key": str(ED_KEY)}, "DKIM_PRIVATE_KEY", "is not an RSA key"),
        ({"dkim_private_key": str(HERE / "dkimverify.pl")}, "DKIM_PRIVATE_KEY", "not a PEM"),
        (
            {
                "dkim_private_key": str(RSA_KEY),
                "dkim_selector": "s",
                "dkim_ed25519_key": str(RSA_KEY),
            },
            "DKIM_ED25519_KEY",
            "not an ED25519 key",
        ),
        (
            {"dkim_ed25519_key": str(ED_KEY)},
            "DKIM_ED25519_KEY",
            "set NEWSLETTER_DKIM_PRIVATE_KEY",
        ),
        ({"dkim_private_key": str(RSA_KEY)}, "DKIM_SELECTOR", "must be set"),
        (
            {"dkim_private_key": str(RSA_KEY), "dkim_selector": "a b"},
            "DKIM_SELECTOR",
            "DNS label",
        ),
        (
            {
                "dkim_private_key": str(RSA_KEY),
                "dkim_selector": "s1",
                "dkim_ed25519_key": str(ED_KEY),
                "dkim_ed25519_selector": "s1",
            },
            "DKIM_ED25519_SELECTOR",
            "must differ",
        ),
        ({"cfbl_address": f"fbl@{DOMAIN}"}, "CFBL_ADDRESS", "needs NEWSLETTER_DKIM_PRIVATE_KEY"),
        (
            {"dkim_private_key": str(RSA_KEY), "dkim_selector": "s", "cfbl_address": "f@x.test"},
            "CFBL_ADDRESS",
            "does not cover",
        ),
        ({"feedback_sender_id": "a:b:cdef"}, "FEEDBACK_SENDER_ID", "5 to 15"),
    ],
)
def test_a_bad_dkim_setting_is_refused_when_settings_load(
    tmp_path, monkeypatch, values, where, says
):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, monkeypatch, **values)

    assert caught.value.where == f"NEWSLETTER_{where}"
    assert says in caught.value.message


def test_good_settings_give_a_signer_with_both_keys(tmp_path, monkeypatch):
    settings = _load(
        tmp_path,
        monkeypatch,
        dkim_private_key=str(RSA_KEY),
        dkim_selector="news2026",
        dkim_ed25519_key=str(ED_KEY),
        dkim_ed25519_selector="ed2026",
        cfbl_address=f"fbl@bounces.{DOMAIN}",
    )

    signer = dkim_for(settings)

    assert [(k.selector, k.domain, k.algorithm) for k in signer.keys] == [
        ("news2026", DOMAIN, "rsa-sha256"),
        ("ed2026", DOMAIN, "ed25519-sha256"),
    ]
    assert not dkim_for(_load(tmp_path, monkeypatch))  # no key: signs nothing


def test_the_cli_names_a_missing_key_in_one_line(cli_env):
    env = Cli(cli_env, NEWSLETTER_DKIM_PRIVATE_KEY="/nowhere/dkim.pem")

    result = env.run("status", check=False)

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "NEWSLETTER_DKIM_PRIVATE_KEY" in lines[0] and "openssl genpkey" in lines[0]


def test_the_signed_golden_verifies_and_signs_its_cfbl_address(tmp_path):
    """tests/golden/eml-signed/ (written by test_eml_golden.py): RFC 9477 wants CFBL-Address
    covered by a valid signature of its domain."""
    data = (HERE / "golden" / "eml-signed" / "ascii-name.eml").read_bytes()

    assert b"\r\nCFBL-Address: fbl@daily.example.org; report=arf\r\n" in data
    assert_both_signatures_verify(data, tmp_path)
    assert signature_tags(data)["h"].split(":").count("cfbl-address") == 2
    removed = re.sub(rb"\r\nCFBL-Address: [^\r]*", b"", data)
    assert mail_dkim(removed, tmp_path)[-1] == "result: fail"


def test_the_env_example_copied_to_env_loads_with_nothing_signed(tmp_path, monkeypatch):
    """`cp .env.example .env`: its empty NEWSLETTER_DKIM_PRIVATE_KEY= means no key."""
    (tmp_path / ".env").write_text((HERE.parent / ".env.example").read_text(encoding="utf-8"))
    for name in [n for n in os.environ if n.startswith("NEWSLETTER_")]:
        monkeypatch.delenv(name)

    settings = _load(tmp_path, monkeypatch)

    assert settings.dkim_private_key is None and settings.dkim_ed25519_key is None
    assert not dkim_for(settings)


def test_an_encrypted_key_and_a_pem_shaped_junk_file_are_told_apart(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization

    key = read_private_key(RSA_KEY, "rsa", "NEWSLETTER_DKIM_PRIVATE_KEY")
    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match="it is encrypted"):
        _load(tmp_path, monkeypatch, dkim_private_key=str(locked), dkim_selector="s")
    # cryptography's ValueError for bad data also speaks of encryption
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="it is not a PEM key"):
        _load(tmp_path, monkeypatch, dkim_private_key=str(junk), dkim_selector="s")
