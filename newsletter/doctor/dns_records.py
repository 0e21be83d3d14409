"""What the mail-authentication TXT records say, read without DNS: pure functions.

    spf_problems("v=spf1 ip4:192.0.2.1 -all")    the syntax errors of an SPF record (RFC 7208)
    tags("v=DMARC1; p=none")                     a DKIM or DMARC tag list, as a dict
    same_key(record_p, key)                      whether a published p= is that key
    organisational_domain("mail.example.co.uk")  example.co.uk, by a rule of thumb

The checks in dns_checks.py turn these into findings.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

#: SPF mechanisms (RFC 7208 §5) and those that cost a DNS lookup (§4.6.4: at most 10).
SPF_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
SPF_LOOKUPS = ("include", "a", "mx", "ptr", "exists", "redirect")
SPF_LOOKUP_LIMIT = 10
_DOMAIN_SPEC = re.compile(r"[A-Za-z0-9_%{}.+-]+")  # a domain, or an SPF macro string


@dataclass(frozen=True)
class SpfTerm:
    qualifier: str  # + - ~ ?  ("" for a modifier)
    name: str  # a mechanism (ip4, include, all, ...) or a modifier (redirect, exp, ...)
    value: str  # what follows ":" or "=" (a CIDR length after "/" included), or ""


def is_spf(record: str) -> bool:
    return record.lower() == "v=spf1" or record.lower().startswith("v=spf1 ")


def spf_terms(record: str) -> list[SpfTerm]:
    """The terms after `v=spf1`, each split into qualifier, name and value."""
    terms: list[SpfTerm] = []
    for word in record.split()[1:]:
        modifier = re.fullmatch(r"([A-Za-z][A-Za-z0-9_.-]*)=(.*)", word)
        if modifier:
            terms.append(SpfTerm("", modifier[1].lower(), modifier[2]))
            continue
        qualifier = word[0] if word[0] in "+-~?" else "+"
        body = word[1:] if word[0] in "+-~?" else word
        name = re.match(r"[A-Za-z0-9_.-]*", body)[0]  # type: ignore[index]
        rest = body[len(name) :]
        terms.append(SpfTerm(qualifier, name.lower(), rest[1:] if rest[:1] == ":" else rest))
    return terms


def spf_problems(record: str) -> list[str]:
    """Why receivers would treat this SPF record as a permanent error; [] when it is sane."""
    problems: list[str] = []
    terms = spf_terms(record)
    lookups = 0
    for term in terms:
        if term.qualifier == "":
            if term.name in ("redirect", "exp") and not _DOMAIN_SPEC.fullmatch(term.value):
                problems.append(f"{term.name}= needs a domain, not {term.value!r}")
            lookups += term.name == "redirect"
            continue
        if term.name not in SPF_MECHANISMS:
            problems.append(f"unknown mechanism {term.name!r}")
            continue
        lookups += term.name in SPF_LOOKUPS
        problem = _mechanism_problem(term)
        if problem:
            problems.append(problem)
    if [term.name for term in terms if term.qualifier == ""].count("redirect") > 1:
        problems.append("more than one redirect=")
    if lookups > SPF_LOOKUP_LIMIT:
        problems.append(
            f"{lookups} mechanisms that need a DNS lookup; receivers stop at {SPF_LOOKUP_LIMIT}"
        )
    return problems


def _mechanism_problem(term: SpfTerm) -> str | None:
    name, value = term.name, term.value
    if name == "all":
        return "all takes no value" if value else None
    if name in ("include", "exists"):
        if not _DOMAIN_SPEC.fullmatch(value):
            return f"{name}: needs a domain" + (f", not {value!r}" if value else "")
        return None
    if name in ("ip4", "ip6"):
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{name}:{value} is not an IPv{name[-1]} address or network"
        if network.version != int(name[-1]):
            return f"{name}:{value} is not an IPv{name[-1]} address"
        return None
    # a, mx, ptr: an optional domain, then optional /cidr
    domain = value.split("/", 1)[0]
    if domain and not _DOMAIN_SPEC.fullmatch(domain):
        return f"{name}:{value} is not a domain"
    return None


def spf_allows(terms: list[SpfTerm], address: str) -> bool | None:
    """Whether the record passes `address`: True or False when its ip4/ip6 terms decide,
    None when a term this function does not follow (include, a, mx, exists, redirect,
    ptr) comes first: that needs the DNS lookups a receiver makes."""
    ip = ipaddress.ip_address(address)
    for term in terms:
        if term.qualifier == "":
            if term.name == "redirect":
                return None
            continue
        if term.name == "all":
            return term.qualifier == "+"
        if term.name in ("ip4", "ip6"):
            try:
                network = ipaddress.ip_network(term.value, strict=False)
            except ValueError:  # malformed: spf_problems says so
                return None
            if network.version == ip.version and ip in network:
                return term.qualifier == "+"
            continue
        return None  # include, a, mx, ptr, exists: not followed here
    return False  # no match and no all: "neutral", which is not a pass


# --- tag lists (DKIM RFC 6376 §3.2, DMARC RFC 7489 §6.4) -------------------------------------


def tags(record: str) -> dict[str, str]:
    """`v=DKIM1; k=rsa; p=...` as {"v": "DKIM1", ...}, names lowercased, whitespace removed
    from values (a p= may be folded); ValueError for a part that is not `name=value`."""
    found: dict[str, str] = {}
    for part in record.split(";"):
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        name = name.strip().lower()
        if not equals or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"{part.strip()!r} is not a tag=value pair")
        found[name] = re.sub(r"\s+", "", value)
    return found


# --- DKIM keys -----------------------------------------------------------------------------

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def key_type(key: PublicKey) -> str:
    """The k= tag for the key: rsa, or ed25519 (RFC 8463)."""
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "rsa"


def same_key(published: str, key: PublicKey) -> bool:
    """Whether a record's p= is `key`; an RSA key may be published as SubjectPublicKeyInfo or
    as a bare PKCS#1 RSAPublicKey (both are in use). ValueError when p= is not a key."""
    try:
        raw = base64.b64decode(published, validate=True)
    except binascii.Error:
        raise ValueError("p= is not base64") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        if len(raw) != 32:
            raise ValueError(f"p= is {len(raw)} bytes, not an Ed25519 key's 32")
        return raw == key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        loaded = serialization.load_der_public_key(raw)
    except ValueError:
        raise ValueError("p= is not an RSA public key") from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise ValueError(f"p= is a {type(loaded).__name__.removesuffix('PublicKey')} key")
    return loaded.public_numbers() == key.public_numbers()


# --- organisational domain -----------------------------------------------------------------

#: Second-level labels under which a country's registry sells names (co.uk, com.au, ...).
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "gv"})


def organisational_domain(domain: str) -> str:
    """The registered domain DMARC's relaxed alignment and policy lookup use (RFC 7489 §3.2).

    A rule of thumb, not the Public Suffix List: the last two labels, or the last three when
    the top level is a two-letter country code and the label before it is one of the usual
    second levels (co.uk, com.au, ac.jp). Wrong for a few registries (e.g. github.io names);
    the doctor says so in its DMARC lines.
    """
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """DMARC identifier alignment: `s` (strict) the same name, `r` (relaxed, the default)
    the same organisational domain."""
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organisational_domain(a) == organisational_domain(b)
