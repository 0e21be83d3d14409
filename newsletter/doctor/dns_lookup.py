"""DNS lookups for the doctor: the one module that calls dnspython.

    lookup = Lookup.from_settings(settings)   # DNS_RESOLVER (or the system's), DNS_TIMEOUT
    lookup.txt("_dmarc.example.org")          # the TXT records, each its strings joined
    lookup.mx("example.org")                  # (preference, host) pairs
    lookup.addresses("relay.example.org")     # its A and AAAA addresses

A name that does not exist, or has no record of the type, is an empty answer: the
checks decide what absence means. A resolver that does not answer in time, answers
SERVFAIL or refuses is `DnsUnanswered`, whose message names the resolver; after the
first one the lookup asks nothing more (each further question raises at once), so a
dead resolver costs one DNS_TIMEOUT, not one per record. Every answer is remembered:
the SPF and DMARC checks ask for some names twice.
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from newsletter.config import Settings, dns_resolver_address
from newsletter.errors import NewsletterError
from newsletter.hygiene import one_line


class DnsUnanswered(NewsletterError):
    """The resolver gave no usable answer (timeout, SERVFAIL, REFUSED, none configured)."""


class Lookup:
    def __init__(self, resolver: dns.resolver.Resolver, shown: str) -> None:
        self._resolver = resolver
        self.shown = shown  # "the resolver 127.0.0.1:5353", or the system's
        self._answers: dict[tuple[str, str], list[str]] = {}
        self._failure: DnsUnanswered | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Lookup:
        """Ask DNS_RESOLVER, or the resolvers of /etc/resolv.conf when it is empty."""
        if settings.dns_resolver:
            address, port = dns_resolver_address(settings.dns_resolver)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [address]
            resolver.port = port
            shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            lookup = cls(resolver, f"the resolver {shown} (NEWSLETTER_DNS_RESOLVER)")
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.exception.DNSException as exc:  # no /etc/resolv.conf, or no servers in it
                lookup = cls(dns.resolver.Resolver(configure=False), "the system resolver")
                lookup._failure = DnsUnanswered(
                    f"no DNS resolver is configured on this machine ({type(exc).__name__})",
                    where="dns",
                    hint="set NEWSLETTER_DNS_RESOLVER to a resolver's address",
                )
                return lookup
            servers = ", ".join(str(server) for server in resolver.nameservers)
            lookup = cls(resolver, f"the system resolver ({servers})")
        # `timeout` bounds one try, `lifetime` the whole question, retries included
        resolver.timeout = resolver.lifetime = settings.dns_timeout
        return lookup

    @property
    def unanswered(self) -> bool:
        """The resolver failed to answer once: every further question fails at once."""
        return self._failure is not None

    def txt(self, name: str) -> list[str]:
        """Each TXT record at `name`, its character-strings joined (RFC 7208 §3.3), sorted."""
        return self._ask(name, "TXT")

    def mx(self, name: str) -> list[tuple[int, str]]:
        """The MX records at `name` as (preference, host), host without the final dot."""
        pairs = [answer.split(" ", 1) for answer in self._ask(name, "MX")]
        return sorted((int(preference), host) for preference, host in pairs)

    def addresses(self, name: str) -> list[str]:
        """The A and AAAA addresses of `name`."""
        return self._ask(name, "A") + self._ask(name, "AAAA")

    def _ask(self, name: str, kind: str) -> list[str]:
        key = (name.lower().rstrip("."), kind)
        if key in self._answers:
            return self._answers[key]
        if self._failure is not None:
            raise self._failure
        try:
            answer = self._resolver.resolve(key[0] + ".", kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            found: list[str] = []
        except dns.exception.Timeout:
            bound = self._resolver.lifetime  # what dnspython waited, all tries together
            self._failure = self._unanswered(f"no answer within {bound:g} s")
            raise self._failure from None
        except dns.resolver.NoNameservers as exc:  # SERVFAIL, REFUSED, or an unreachable port
            self._failure = self._unanswered(_server_said(exc))
            raise self._failure from None
        except dns.exception.DNSException as exc:  # a malformed name or answer
            raise DnsUnanswered(
                f"{type(exc).__name__}: {one_line(str(exc))}",
                where=f"{kind} {key[0]}",
                hint=self._hint,
            ) from None
        else:
            found = sorted(_text(record, kind) for record in answer)  # a set: in any order
        self._answers[key] = found
        return found

    def _unanswered(self, what: str) -> DnsUnanswered:
        return DnsUnanswered(f"{self.shown} gave no answer: {what}", where="dns", hint=self._hint)

    @property
    def _hint(self) -> str:
        return (
            "the DNS records were not checked; try again, or set NEWSLETTER_DNS_RESOLVER "
            "to a resolver that answers (and NEWSLETTER_DNS_TIMEOUT)"
        )


def _text(record: object, kind: str) -> str:
    if kind == "TXT":
        strings = getattr(record, "strings", ())
        return b"".join(strings).decode("utf-8", errors="replace")
    if kind == "MX":
        exchange = getattr(record, "exchange", dns.name.root)
        return f"{getattr(record, 'preference', 0)} {exchange.to_text(omit_final_dot=True)}"
    return str(record)


def _server_said(exc: dns.resolver.NoNameservers) -> str:
    """SERVFAIL, REFUSED or the socket error, from dnspython's list of what each server did."""
    errors = exc.kwargs.get("errors") or []
    for error in errors:
        said = error[3] if len(error) > 3 else None
        if isinstance(said, str) and said:
            return f"it answered {said}"
        if said is not None:
            return f"{type(said).__name__}: {said}"
    return "it answered with an error"
