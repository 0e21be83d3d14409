"""The client's address and scheme behind a reverse proxy: the rule of `newsletter/web/proxy.py`.

The rule on its own (pure functions), then through the whole app (Starlette's
TestClient with a chosen peer address): the consent record, the editor's login
throttle and the Secure flag of the session cookie all follow it. nginx in front
of a real `newsletter serve` is tests/test_deploy_nginx.py.
"""

from __future__ import annotations

import ipaddress
import logging
import re

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.store import consent as consent_store
from newsletter.web import create_app
from newsletter.web.proxy import client_host, request_scheme

SPOOF = "203.0.113.66"  # what a client claims to be in X-Forwarded-For
PROXY = "10.0.0.1"


def nets(*items: str):
    return [ipaddress.ip_network(item, strict=False) for item in items]


# The rule


def test_an_untrusted_peer_with_a_spoofed_header_is_the_peer():
    assert client_host("198.51.100.7", [SPOOF], nets(PROXY)) == "198.51.100.7"
    assert client_host("198.51.100.7", [SPOOF], []) == "198.51.100.7"  # the default: nobody


def test_by_default_even_loopback_is_not_trusted():
    assert client_host("127.0.0.1", [SPOOF], nets()) == "127.0.0.1"


def test_a_trusted_proxy_names_the_client():
    assert client_host(PROXY, ["198.51.100.7"], nets(PROXY)) == "198.51.100.7"
    assert client_host(PROXY, [], nets(PROXY)) == PROXY  # nothing forwarded: the proxy itself


def test_the_right_most_untrusted_entry_wins_over_what_the_client_wrote():
    # The client sent X-Forwarded-For: SPOOF; its proxy (10.0.0.2) appended what it saw,
    # then the edge proxy (10.0.0.1, our peer) appended 10.0.0.2.
    chain = [f"{SPOOF}, 198.51.100.7, 10.0.0.2"]
    assert client_host(PROXY, chain, nets("10.0.0.0/8")) == "198.51.100.7"
    # Two headers are one list, in order.
    assert client_host(PROXY, [SPOOF, "198.51.100.7"], nets(PROXY)) == "198.51.100.7"


def test_an_entry_that_is_no_address_stops_at_the_last_trusted_hop():
    assert client_host(PROXY, ["198.51.100.7, bogus, 10.0.0.2"], nets("10.0.0.0/8")) == "10.0.0.2"
    assert client_host(PROXY, ["unknown"], nets(PROXY)) == PROXY


def test_only_trusted_hops_give_the_left_most_of_them():
    assert client_host(PROXY, ["10.0.0.3, 10.0.0.2"], nets("10.0.0.0/8")) == "10.0.0.3"


def test_ipv6_and_ipv4_mapped_peers():
    assert client_host("::ffff:127.0.0.1", ["2001:db8::7"], nets("127.0.0.1")) == "2001:db8::7"
    assert client_host("::1", ["[2001:db8::7]"], nets("::1")) == "2001:db8::7"


def test_the_scheme_is_the_proxys_only_when_it_is_trusted():
    assert request_scheme("198.51.100.7", "http", "https", nets(PROXY)) == "http"
    assert request_scheme(PROXY, "http", "https", nets(PROXY)) == "https"
    assert request_scheme(PROXY, "http", "HTTPS", nets(PROXY)) == "https"
    assert request_scheme(PROXY, "http", "https, http", nets(PROXY)) == "http"  # nearest last
    assert request_scheme(PROXY, "http", "gopher", nets(PROXY)) == "http"
    assert request_scheme(PROXY, "https", None, nets(PROXY)) == "https"


def test_the_setting_takes_addresses_and_networks_and_refuses_anything_else(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    parsed = load_settings(trusted_proxies=" 127.0.0.1, 10.0.0.0/8 ,::1").trusted_networks
    assert parsed == tuple(nets("127.0.0.1", "10.0.0.0/8", "::1"))
    assert load_settings().trusted_networks == ()
    with pytest.raises(ConfigError) as caught:
        load_settings(trusted_proxies="127.0.0.1,nginx.local")
    assert "NEWSLETTER_TRUSTED_PROXIES" in str(caught.value)
    assert "'nginx.local' is not an IP address" in str(caught.value)


# Through the app


def app_client(settings, peer: str, *, base: str = "https://testserver", **changes) -> TestClient:
    """The app with changed settings, its TestClient connecting from `peer`."""
    configured = settings.model_copy(update=changes)
    return TestClient(create_app(configured), base_url=base, client=(peer, 50000))


def sign_up_and_confirm(client: TestClient, smtp_server, email: str, headers: dict) -> None:
    page = client.get("/subscribe", headers=headers)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    data = {"csrf_token": csrf, "email": email, "name": "", "website": ""}
    assert client.post("/subscribe", data=data, headers=headers).status_code == 200
    text = smtp_server.received[-1].message.get_body(("plain",)).get_content()
    path = re.search(r"https?://\S+?(/confirm/\S+)", text).group(1)
    assert client.post(path, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("peer", "trusted", "recorded"),
    [
        ("198.51.100.7", "", "198.51.100.7"),  # the default: the header is ignored
        ("198.51.100.7", PROXY, "198.51.100.7"),  # a peer that is not the proxy
        (PROXY, PROXY, SPOOF),  # the proxy vouches for it
    ],
)
def test_the_consent_record_keeps_the_address_the_rule_gives(
    settings, engine, smtp_server, peer, trusted, recorded
):
    with app_client(settings, peer, trusted_proxies=trusted) as client:
        sign_up_and_confirm(client, smtp_server, "ann@example.com", {"X-Forwarded-For": SPOOF})
    assert consent_store.get_consent(engine, "ann@example.com").consent_ip == recorded


def test_the_login_throttle_counts_by_client_behind_the_proxy(settings, caplog):
    """Wrong passwords lock out the client the proxy names, whatever it writes in front of
    that (a proxy that appends, like nginx's $proxy_add_x_forwarded_for), and only it."""
    caplog.set_level(logging.INFO, logger="newsletter")

    def wrong_password(client: TestClient, forwarded_for: str) -> int:
        headers = {"X-Forwarded-For": forwarded_for}
        page = client.get("/editor/login", headers=headers)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        data = {"csrf_token": csrf, "password": "wrong", "next": "/editor"}
        return client.post("/editor/login", data=data, headers=headers).status_code

    changes = {"trusted_proxies": PROXY, "editor_password": SecretStr("right")}
    with app_client(settings, PROXY, **changes) as client:
        answers = [wrong_password(client, f"203.0.113.{i}, 198.51.100.7") for i in range(1, 13)]
        other = wrong_password(client, "198.51.100.8")
    assert answers[0] == 401 and answers[-1] == 429
    assert other == 401  # another client behind the same proxy is not locked out
    logged = {r._fields["client"] for r in caplog.records if r.getMessage() == "editor_action"}
    assert logged == {"198.51.100.7", "198.51.100.8"}


@pytest.mark.parametrize(
    ("peer", "trusted", "secure"),
    [(PROXY, PROXY, True), ("198.51.100.7", PROXY, False), (PROXY, "", False)],
)
def test_https_from_a_trusted_proxy_makes_the_session_cookie_secure(
    settings, peer, trusted, secure
):
    # BASE_URL is http here, so only X-Forwarded-Proto can make the cookie Secure.
    changes = {"trusted_proxies": trusted, "base_url": "http://news.test"}
    with app_client(settings, peer, base="http://testserver", **changes) as client:
        answer = client.get("/subscribe", headers={"X-Forwarded-Proto": "https"})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("newsletter_form=")
    assert ("; secure" in cookie.lower()) is secure
    assert cookie.lower().count("secure") <= 1
