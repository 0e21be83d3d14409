"""`newsletter doctor`'s DNS checks against a real DNS server: dnsmasq on loopback
(tests/dnsserver.py), one for the module, serving good and broken SPF, DKIM, DMARC and
MX records, each case at a name of its own; and resolvers that do not answer."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dnsserver import dns_server, free_udp_and_tcp_port, mx, txt

from newsletter.config import Severity, load_settings
from newsletter.dkim import public_record as dkim_record
from newsletter.doctor import dns_checks, run_doctor
from newsletter.errors import ConfigError

RELAY = "192.0.2.10"  # NEWSLETTER_SMTP_HOST: an address, so SPF's ip4: terms can be matched
GOOD = "dailybrief.net"


def pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The configured DKIM keys (RSA and Ed25519) as PEM files, and another RSA key."""
    folder = tmp_path_factory.mktemp("dkim")
    made = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "other": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    paths = {}
    for name, key in made.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(pem(key))
    return {name: (paths[name], key.public_key()) for name, key in made.items()}


@pytest.fixture(scope="module")
def server(keys):
    ours, other, ed = keys["rsa"][1], keys["other"][1], keys["ed25519"][1]
    pkcs1 = base64.b64encode(
        ours.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    ).decode()
    p = dkim_record(ours).split("p=")[1]
    records = [
        # the good domain: From news@dailybrief.net, bounces at bounces.dailybrief.net
        txt(GOOD, "v=spf1 ip4:192.0.2.0/24 -all"),
        txt(GOOD, "google-site-verification=abc"),  # another TXT: not an SPF record
        mx(GOOD, f"mx.{GOOD}"),
        txt(f"bounces.{GOOD}", f"v=spf1 ip4:{RELAY} -all"),
        f"host-record=relay.{GOOD},{RELAY}",  # the relay by name: its address from DNS
        mx(f"bounces.{GOOD}", f"mx1.{GOOD}", 10),
        mx(f"bounces.{GOOD}", f"mx2.{GOOD}", 20),
        txt(f"_dmarc.{GOOD}", f"v=DMARC1; p=reject; rua=mailto:dmarc@{GOOD}"),
        txt(f"sel._domainkey.{GOOD}", dkim_record(ours)),
        txt(f"pkcs1._domainkey.{GOOD}", f"v=DKIM1; p={pkcs1}"),
        txt(f"ed._domainkey.{GOOD}", dkim_record(ed)),
        txt(f"other._domainkey.{GOOD}", dkim_record(other)),
        txt(f"revoked._domainkey.{GOOD}", "v=DKIM1; k=rsa; p="),
        txt(f"edtype._domainkey.{GOOD}", f"v=DKIM1; k=ed25519; p={p}"),
        txt(f"garbage._domainkey.{GOOD}", "v=DKIM1; k=rsa; p=!!not-base64!!"),
        txt(f"notags._domainkey.{GOOD}", "this is not a tag list"),
        txt(f"two._domainkey.{GOOD}", dkim_record(ours)),
        txt(f"two._domainkey.{GOOD}", dkim_record(other)),
        # SPF cases (From = envelope sender: no bounce address)
        txt("twospf.net", "v=spf1 -all"),
        txt("twospf.net", f"v=spf1 ip4:{RELAY} -all"),
        txt("badspf.net", "v=spf1 ip4:300.1.1.1 foo -all"),
        txt("plusall.net", "v=spf1 +all"),
        txt("elsewhere.net", "v=spf1 ip4:198.51.100.1 -all"),
        txt("include.net", "v=spf1 include:_spf.relay.net -all"),
        txt("neutral.net", f"v=spf1 ip4:{RELAY}"),
        mx("nospf.net", "mx.nospf.net"),
        # DMARC cases
        txt("_dmarc.monitor.net", "v=DMARC1; p=none"),
        txt("_dmarc.badpolicy.net", "v=DMARC1; p=maybe"),
        txt("_dmarc.nopolicy.net", "v=DMARC1; rua=mailto:dmarc@nopolicy.net"),
        txt("_dmarc.strict.net", "v=DMARC1; p=reject; aspf=s"),
        txt("_dmarc.twodmarc.net", "v=DMARC1; p=reject"),
        txt("_dmarc.twodmarc.net", "v=DMARC1; p=none"),
        # MX cases
        mx("nullmx.net", ".", 0),
    ]
    with dns_server(records, zones=["net"]) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_env_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no developer .env leaks in


def dns(resolver: str, *, from_address: str = f"news@{GOOD}", timeout: float = 5.0, **more):
    """The DNS check's findings; `more`: other settings (bounce_address, dkim_*)."""
    more = {"smtp_host": RELAY, **more}
    settings = load_settings(
        dns_resolver=resolver, dns_timeout=timeout, from_address=from_address, **more
    )
    return run_doctor(settings, only=["dns"]).findings


def good(server, keys, **changes):
    """The good domain, fully set up; `changes` break one thing."""
    setup = {
        "bounce_address": f"bounces@bounces.{GOOD}",
        "dkim_private_key": str(keys["rsa"][0]),
        "dkim_selector": "sel",
    }
    return dns(server.address, **{**setup, **changes})


def about(findings, prefix):
    return [(f.severity, str(f)) for f in findings if f.subject.startswith(prefix)]


# ── everything right ─────────────────────────────────────────────────────────


def test_a_domain_set_up_right_passes_every_dns_check(server, keys):
    found = good(server, keys)
    assert [(f.severity, str(f)) for f in found] == [
        (Severity.OK, f"SPF bounces.{GOOD}: 'v=spf1 ip4:{RELAY} -all' authorises the relay "
         f"({RELAY})"),
        (Severity.OK, f"SPF {GOOD}: 'v=spf1 ip4:192.0.2.0/24 -all' authorises the relay "
         f"({RELAY})"),
        (Severity.OK, f"DKIM sel._domainkey.{GOOD}: publishes the configured key (rsa, 2048 bits)"),
        (Severity.OK, f"DMARC _dmarc.{GOOD}: p=reject"),
        (Severity.OK, f"DMARC alignment: From {GOOD} aligns with DKIM d={GOOD} (relaxed) and "
         f"SPF bounces.{GOOD} (relaxed)"),
        (Severity.OK, f"MX bounces.{GOOD}: bounces to bounces@bounces.{GOOD} go to "
         f"mx1.{GOOD} (10), mx2.{GOOD} (20)"),
    ]  # fmt: skip


def test_without_a_bounce_address_spf_and_mx_are_checked_at_the_from_domain(server, keys):
    found = good(server, keys, bounce_address="")
    assert about(found, "SPF")[0] == (
        Severity.INFO,
        f"SPF: no NEWSLETTER_BOUNCE_ADDRESS: the envelope sender is news@{GOOD}, so the bounce "
        f"domain checked is {GOOD}",
    )
    assert [s for s, _ in about(found, "SPF ")] == [Severity.OK]
    assert about(found, "MX") == [
        (Severity.OK, f"MX {GOOD}: bounces to news@{GOOD} go to mx.{GOOD} (10)")
    ]


# ── SPF ──────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("domain", "severity", "expected"),
    [
        ("nospf.net", Severity.ERROR, "no SPF record (TXT v=spf1): receivers cannot tell our "
         "relay from a forger (publish one TXT record at nospf.net: \"v=spf1 ip4:192.0.2.10 "
         "-all\")"),
        ("twospf.net", Severity.ERROR, "2 SPF records ('v=spf1 -all' and 'v=spf1 ip4:192.0.2.10 "
         "-all'); receivers treat more than one as a permanent error (RFC 7208 §4.5) (merge "
         "them into one TXT record)"),
        ("badspf.net", Severity.ERROR, "'v=spf1 ip4:300.1.1.1 foo -all' is malformed "
         "(ip4:300.1.1.1 is not an IPv4 address or network; unknown mechanism 'foo'): "
         "receivers treat it as a permanent error"),
        ("plusall.net", Severity.ERROR, "'v=spf1 +all' ends in +all: it authorises every server "
         "on the internet to send as plusall.net (end it with -all (or ~all) instead)"),
        ("elsewhere.net", Severity.WARNING, "'v=spf1 ip4:198.51.100.1 -all' does not authorise "
         "the relay NEWSLETTER_SMTP_HOST (192.0.2.10)"),
        ("include.net", Severity.OK, "'v=spf1 include:_spf.relay.net -all' (whether it "
         "authorises the relay 192.0.2.10 is unknown: its include:, a or mx terms are not "
         "followed here)"),
        ("neutral.net", Severity.WARNING, "'v=spf1 ip4:192.0.2.10' does not end in -all or "
         "~all: mail from any other server is only 'neutral', not a fail"),
    ],
)  # fmt: skip
def test_spf_records_good_missing_doubled_malformed_and_permissive(
    server, domain, severity, expected
):
    [(found_severity, line)] = about(dns(server.address, from_address=f"news@{domain}"), "SPF ")
    assert (found_severity, line.removeprefix(f"SPF {domain}: ")[: len(expected)]) == (
        severity,
        expected,
    )


def test_a_relay_named_by_host_is_matched_by_its_addresses(server, keys):
    by_name = good(server, keys, smtp_host=f"relay.{GOOD}", bounce_address="")
    assert about(by_name, "SPF ") == [
        (Severity.OK, f"SPF {GOOD}: 'v=spf1 ip4:192.0.2.0/24 -all' authorises the relay "
         f"({RELAY})"),
    ]  # fmt: skip
    unknown = good(server, keys, smtp_host=f"nowhere.{GOOD}", bounce_address="")
    assert about(unknown, "SPF ")[0][1].endswith(
        "(the relay's sending address unknown here, so not matched against it)"
    )


# ── DKIM ─────────────────────────────────────────────────────────────────────


def test_dkim_records_matching_the_key_pass_in_either_rsa_form_and_for_ed25519(server, keys):
    assert about(good(server, keys, dkim_selector="pkcs1"), "DKIM") == [
        (Severity.OK, f"DKIM pkcs1._domainkey.{GOOD}: publishes the configured key (rsa, "
         "2048 bits)"),
    ]  # fmt: skip
    ed = good(server, keys, dkim_ed25519_selector="ed", dkim_ed25519_key=str(keys["ed25519"][0]))
    assert about(ed, "DKIM") == [
        (Severity.OK, f"DKIM sel._domainkey.{GOOD}: publishes the configured key (rsa, "
         "2048 bits)"),
        (Severity.OK, f"DKIM ed._domainkey.{GOOD}: publishes the configured key (ed25519)"),
    ]  # fmt: skip
    # The second key is checked on its own: RSA's record at its selector is not Ed25519's.
    wrong = good(server, keys, dkim_ed25519_selector="other",
                 dkim_ed25519_key=str(keys["ed25519"][0]))  # fmt: skip
    [(severity, line)] = about(wrong, "DKIM other.")
    assert severity is Severity.ERROR
    assert line.startswith(f"DKIM other._domainkey.{GOOD}: k=rsa, but the configured key "
                           f"{keys['ed25519'][0]} is ed25519: every signature fails")  # fmt: skip
    assert dkim_record(keys["ed25519"][1]) in line


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("missing", "no record: receivers cannot verify our signatures"),
        ("other", "publishes a different key from {key}: every signature fails"),
        ("revoked", "p= is empty: the key is revoked (RFC 6376 §3.6.1), so every signature "
         "fails"),
        ("edtype", "k=ed25519, but the configured key {key} is rsa: every signature fails"),
        ("garbage", "malformed: p= is not base64"),
        ("notags", "malformed: 'this is not a tag list' is not a tag=value pair"),
        ("two", "2 TXT records: verifiers may read either"),
    ],
)  # fmt: skip
def test_a_dkim_record_missing_different_revoked_mistyped_or_malformed_is_an_error_with_the_record(
    server, keys, selector, problem
):
    path, public = keys["rsa"]
    [finding] = [f for f in good(server, keys, dkim_selector=selector) if f.subject[:4] == "DKIM"]
    assert finding.severity is Severity.ERROR
    assert finding.subject == f"DKIM {selector}._domainkey.{GOOD}"
    assert finding.message == problem.format(key=path)
    assert f'"{dkim_record(public)}"' in finding.fix  # the exact record to publish
    assert f"at {selector}._domainkey.{GOOD}" in finding.fix or selector == "two"


def test_dkim_unset_is_a_warning_and_a_bad_key_or_selector_a_settings_error(server, keys, tmp_path):
    unset = good(server, keys, dkim_private_key="", dkim_selector="")
    assert [f.severity for f in unset if f.subject == "DKIM"] == [Severity.WARNING]
    # nothing is signed, so only SPF can align; it does here
    assert about(unset, "DMARC alignment")[0][0] is Severity.OK

    # A key that cannot be used, or one without a selector, stops the settings loading:
    # one line naming the setting, before any DNS is asked.
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="it is not a PEM key") as broken:
        good(server, keys, dkim_private_key=str(not_a_key))
    assert broken.value.where == "NEWSLETTER_DKIM_PRIVATE_KEY"
    with pytest.raises(ConfigError, match="cannot be read"):
        good(server, keys, dkim_private_key=str(tmp_path / "absent.pem"))
    with pytest.raises(ConfigError, match="must be set when") as no_selector:
        good(server, keys, dkim_selector="")
    assert no_selector.value.where == "NEWSLETTER_DKIM_SELECTOR"


# ── DMARC and alignment ──────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("domain", "severity", "subject", "message"),
    [
        ("nodmarc.net", Severity.ERROR, "DMARC", "no DMARC record at _dmarc.nodmarc.net: Gmail "
         "and Yahoo require one of bulk senders"),
        ("monitor.net", Severity.WARNING, "DMARC _dmarc.monitor.net", "p=none: receivers report "
         "failures but act on none, and forged mail as monitor.net still arrives"),
        ("badpolicy.net", Severity.ERROR, "DMARC _dmarc.badpolicy.net", "malformed: p=maybe is "
         "not one of none, quarantine, reject"),
        ("nopolicy.net", Severity.ERROR, "DMARC _dmarc.nopolicy.net", "malformed: "
         "'v=DMARC1; rua=mailto:dmarc@nopolicy.net' has no p= policy"),
        ("twodmarc.net", Severity.ERROR, "DMARC _dmarc.twodmarc.net", "2 DMARC records: "
         "receivers then apply none (RFC 7489 §6.6.3)"),
    ],
)  # fmt: skip
def test_dmarc_records_missing_monitoring_only_or_malformed(
    server, domain, severity, subject, message
):
    found = dns(server.address, from_address=f"news@{domain}")
    [first, *_] = [f for f in found if f.subject.startswith("DMARC") and "alignment" not in
                   f.subject]  # fmt: skip
    assert (first.severity, first.subject, first.message) == (severity, subject, message)
    if severity is Severity.ERROR and subject == "DMARC":
        assert first.fix == f'publish one TXT record at _dmarc.{domain}: "v=DMARC1; p=quarantine"'


def test_a_subdomain_inherits_the_organisational_domains_dmarc_record(server, keys):
    found = good(server, keys, dkim_domain=GOOD)
    sub = dns(server.address, from_address=f"news@mail.{GOOD}",
              bounce_address=f"bounces@bounces.{GOOD}")  # fmt: skip
    [policy] = [f for f in sub if f.subject == f"DMARC _dmarc.{GOOD}"]
    assert policy.severity is Severity.OK
    assert policy.message.startswith(f"p=reject (inherited: {GOOD} is the organisational domain")
    assert [f.severity for f in found if f.subject.startswith("DMARC")] == [Severity.OK] * 2


def test_alignment_of_from_with_the_dkim_and_bounce_domains(server, keys):
    spf_off = good(server, keys, bounce_address="bounces@twospf.net")
    assert about(spf_off, "DMARC alignment") == [
        (Severity.WARNING, f"DMARC alignment: From {GOOD} aligns with DKIM d={GOOD} (relaxed) "
         "only, not SPF twospf.net (relaxed): DMARC passes while that one does (use a bounce "
         f"address at {GOOD} or a subdomain of it (NEWSLETTER_BOUNCE_ADDRESS))"),
    ]  # fmt: skip
    both_off = good(server, keys, bounce_address="b@twospf.net", dkim_domain="elsewhere.net")
    [(severity, line)] = about(both_off, "DMARC alignment")
    assert severity is Severity.ERROR and "DMARC fails for every message" in line
    assert f"set NEWSLETTER_DKIM_DOMAIN to {GOOD}" in line

    strict = dns(server.address, from_address="news@strict.net", bounce_address="b@mx.strict.net")
    [(severity, line)] = about(strict, "DMARC alignment")
    assert severity is Severity.ERROR
    assert (
        "not SPF mx.strict.net (strict)" in line and "use a bounce address at strict.net " in line
    )


# ── MX ───────────────────────────────────────────────────────────────────────


def test_the_bounce_domain_without_mx_or_with_a_null_mx_is_an_error(server, keys):
    assert about(good(server, keys, bounce_address="bounces@plusall.net"), "MX") == [
        (Severity.ERROR, "MX plusall.net: no MX record: bounces sent to bounces@plusall.net may "
         "never come back (publish an MX record at plusall.net naming the server that receives "
         "mail for bounces@plusall.net)"),
    ]  # fmt: skip
    [(severity, line)] = about(good(server, keys, bounce_address="b@nullmx.net"), "MX")
    assert severity is Severity.ERROR
    assert line.startswith("MX nullmx.net: a null MX (RFC 7505): nullmx.net says it receives no")


# ── resolvers that do not answer ─────────────────────────────────────────────


def test_a_resolver_that_does_not_answer_is_one_warning_within_the_timeout(keys):
    port = free_udp_and_tcp_port()  # nothing listens: the question goes unanswered
    found = dns(f"127.0.0.1:{port}", timeout=0.5, bounce_address=f"b@bounces.{GOOD}")
    assert [(f.severity, str(f)) for f in found] == [
        (Severity.WARNING, f"dns: the resolver 127.0.0.1:{port} (NEWSLETTER_DNS_RESOLVER) gave "
         "no answer: no answer within 0.5 s; not checked: SPF, DKIM, DMARC, MX (the DNS "
         "records were not checked; try again, or set NEWSLETTER_DNS_RESOLVER to a resolver "
         "that answers (and NEWSLETTER_DNS_TIMEOUT))"),
    ]  # fmt: skip


def test_a_resolver_that_refuses_is_a_warning_naming_it(server):
    found = dns(server.address, from_address="news@dailybrief.org")  # outside its zones
    [warning] = [f for f in found if f.severity is not Severity.INFO]
    assert warning.severity is Severity.WARNING and warning.subject == "dns"
    assert warning.message.startswith(
        f"the resolver {server.address} (NEWSLETTER_DNS_RESOLVER) gave no answer: it answered "
        "REFUSED; not checked: SPF"
    )


def test_a_record_check_that_breaks_is_an_error_and_the_others_run(server, keys, monkeypatch):
    def broken(lookup, domains, settings):
        raise KeyError("an unforeseen failure")

    monkeypatch.setattr(dns_checks, "DNS_CHECKS", (("SPF", broken), *dns_checks.DNS_CHECKS[1:]))
    found = good(server, keys)
    assert (found[0].severity, found[0].subject) == (Severity.ERROR, "SPF")
    assert "the check itself failed: KeyError" in found[0].message
    assert [f.subject for f in found[1:]] == [
        f"DKIM sel._domainkey.{GOOD}",
        f"DMARC _dmarc.{GOOD}",
        "DMARC alignment",
        f"MX bounces.{GOOD}",
    ]


def test_names_reserved_for_examples_are_not_asked():
    found = dns("127.0.0.1:9", from_address="news@daily.example.org")
    assert [(f.severity, str(f)) for f in found] == [
        (Severity.INFO, "dns: not checked: daily.example.org is a name reserved for examples, "
         "no DNS answers for it"),
    ]  # fmt: skip


@pytest.mark.parametrize("value", ["dns.example.net", "127.0.0.1:0", "[::1", "1.2.3.4:x"])
def test_a_resolver_setting_that_is_not_an_address_is_refused(value):
    with pytest.raises(ConfigError, match="must be an IP address with an optional port"):
        load_settings(dns_resolver=value)


def test_the_command_prints_the_dns_lines_from_the_resolver_it_is_given(cli_env, server, tmp_path):
    from conftest import Cli

    real = Cli(
        cli_env,
        NEWSLETTER_FROM_ADDRESS=f"news@{GOOD}",
        NEWSLETTER_DNS_RESOLVER=server.address,
        NEWSLETTER_DNS_TIMEOUT="3",
    )
    output = real.run("doctor", cwd=tmp_path, check=False).stdout.splitlines()
    assert f"ok      DMARC _dmarc.{GOOD}: p=reject" in output
    assert f"ok      MX {GOOD}: bounces to news@{GOOD} go to mx.{GOOD} (10)" in output
    [spf] = [line for line in output if line.startswith(f"ok      SPF {GOOD}: ")]
    assert "relay's sending address unknown here" in spf  # the test relay is on loopback
