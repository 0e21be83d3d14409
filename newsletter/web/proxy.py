"""Who is asking, and over what: the client's address and scheme, behind a proxy or not.

One rule for the whole app, applied once per request by `ProxyHeaders` (an ASGI
middleware, the outermost), so throttling, consent records and the editor's
login throttle all see the same address; `newsletter serve` runs uvicorn with
`proxy_headers=False`, so there is no second rule.

    peer not in TRUSTED_PROXIES   the peer's address and the connection's scheme;
                                  X-Forwarded-For / X-Forwarded-Proto / Forwarded
                                  are ignored (anyone can send them)
    peer trusted                  the right-most X-Forwarded-For entry that is not
                                  itself a trusted proxy: each proxy appends the
                                  address it saw, so that is the first hop nobody
                                  we trust vouches beyond; X-Forwarded-Proto https
                                  makes the request https

The default trusts nobody. Only X-Forwarded-* are read (what deploy/nginx.conf
sends); RFC 7239 `Forwarded` never is. A request that is https by either road
gets its cookies marked `Secure` here too, whichever layer set them (a belt to
`sessions.py`'s braces: no cookie of an https request ever travels over http).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    """An IP address from a header entry or a peer, or None for anything else.

    IPv4-mapped IPv6 (`::ffff:127.0.0.1`, a dual-stack socket's view) counts as
    the IPv4 address, so `127.0.0.1` in TRUSTED_PROXIES matches it.
    """
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address | None, trusted: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_host(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless a trusted proxy says whom it forwards for.

    `forwarded_for` holds the X-Forwarded-For header values in order (several
    headers count as one list). Walking from the right, trusted proxies are
    skipped; the first other entry is the client. An entry that is not an IP
    address stops the walk at the last trusted hop, which is then the best
    address we can vouch for; so does a list made only of trusted proxies.
    """
    vouched = _address(peer)
    if not _trusted(vouched, trusted):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        vouched = address
        if not _trusted(address, trusted):
            break
    return str(vouched)


def request_scheme(
    peer: str, scheme: str, forwarded_proto: str | None, trusted: Sequence[Network]
) -> str:
    """`https` or `http`: the connection's, or what a trusted proxy says its client used."""
    if forwarded_proto is None or not _trusted(_address(peer), trusted):
        return scheme
    said = forwarded_proto.split(",")[-1].strip().lower()  # the proxy nearest to us speaks last
    return said if said in ("http", "https") else scheme


class ProxyHeaders:
    """ASGI middleware: the scope's client and scheme by the rule above; Secure cookies on https."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if client and self.trusted:
            forwarded_for: list[str] = []
            forwarded_proto: str | None = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    forwarded_proto = value.decode("latin-1")
            peer = client[0]
            scope = dict(scope)
            scope["client"] = (client_host(peer, forwarded_for, self.trusted), client[1])
            scope["scheme"] = request_scheme(peer, scope["scheme"], forwarded_proto, self.trusted)
        if scope["scheme"] != "https":
            await self.app(scope, receive, send)
            return

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                _mark_cookies_secure(message)
            await send(message)

        await self.app(scope, receive, send_secure)


def _mark_cookies_secure(message: Message) -> None:
    message.setdefault("headers", [])
    headers = MutableHeaders(scope=message)
    cookies = headers.getlist("set-cookie")
    if not cookies:
        return
    del headers["set-cookie"]
    for cookie in cookies:
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        headers.append("set-cookie", cookie if "secure" in attributes else f"{cookie}; secure")


def client_address(connection: HTTPConnection) -> str:
    """The client's address by the rule above (what throttles and consent records key on)."""
    return connection.client.host if connection.client else ""
