"""What an SNS message points at, fetched: its signing certificate (cached), its SubscribeURL.

An SNS message names the URL of the certificate that signed it; `providers.verify_sns`
checks the URL's form and the signature, and asks `SnsFetcher.certificate` for the
bytes. SNS signs every message with the same certificate for months, so each URL
is fetched once and kept (at most CACHE_SIZE of them, the least recently used
dropped first): a burst of bounces costs one HTTPS request, not one each.

Every fetch is bounded: https only, to a host the host rule allows (SNS's own,
`providers.SNS_HOST`; a test gives its local server's), TLS verified with the
context given (the system's trust store by default), no redirects, TIMEOUT
seconds in all (connecting, the handshake, the answer), at most MAX_BYTES. A
fetch that fails raises `SnsUnreachable`: the message may well be genuine, so
the webhook answers 503 and SNS sends it again later; nothing is recorded. A
certificate URL that failed is not tried again for RETRY_AFTER seconds, so
messages naming a host that hangs cannot hold the server's threads one each.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from newsletter.bounces.providers import SNS_HOST, WebhookRefused
from newsletter.errors import NewsletterError
from newsletter.hygiene import one_line

TIMEOUT = 5.0  # seconds for one fetch, all of it
MAX_BYTES = 64 * 1024  # an SNS certificate is about 2 KB; a confirmation's answer under 1 KB
CACHE_SIZE = 16  # certificate URLs kept (SNS has one per region, rotated every few months)
RETRY_AFTER = 30.0  # seconds before a certificate URL that failed is fetched again
_CHUNK = 8192


class SnsUnreachable(NewsletterError):
    """The certificate (or SubscribeURL) could not be fetched now: try the message again later."""


@dataclass
class SnsFetcher:
    """HTTPS GETs to SNS, with the bounds of the module doc, and the certificate cache."""

    context: ssl.SSLContext
    host_pattern: re.Pattern[str] = SNS_HOST
    timeout: float = TIMEOUT
    max_bytes: int = MAX_BYTES
    cache_size: int = CACHE_SIZE
    fetches: int = 0  # HTTPS requests made (certificates and confirmations), for tests and logs
    _cache: OrderedDict[str, bytes] = field(default_factory=OrderedDict, repr=False)
    _failed: OrderedDict[str, float] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def certificate(self, url: str) -> bytes:
        """The PEM bytes at `url`, fetched the first time only (`verify_sns` checks them)."""
        with self._lock:
            if url in self._cache:
                self._cache.move_to_end(url)
                return self._cache[url]
            failed_at = self._failed.get(url)
        if failed_at is not None and time.monotonic() - failed_at < RETRY_AFTER:
            raise SnsUnreachable(  # a host that hangs costs one fetch, not one per request
                f"it could not be fetched {time.monotonic() - failed_at:.0f} s ago",
                where=url[:200],
            )
        try:
            data = self.get(url)
        except SnsUnreachable:
            with self._lock:
                _keep(self._failed, url, time.monotonic(), self.cache_size)
            raise
        if b"-----BEGIN CERTIFICATE-----" in data:  # keep only what can be one
            with self._lock:
                _keep(self._cache, url, data, self.cache_size)
                self._failed.pop(url, None)
        return data

    def get(self, url: str) -> bytes:
        """The body of a 200 answer to GET `url` (the host rule, TLS, time and size bounds)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme != "https" or not self.host_pattern.fullmatch(host):
            raise WebhookRefused(f"{one_line(url)[:200]!r} is not an SNS https URL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        deadline = time.monotonic() + self.timeout
        where = f"https://{host}{parts.path}"[:200]
        try:
            port = parts.port or 443
        except ValueError:
            raise WebhookRefused(f"{one_line(url)[:200]!r} has a bad port") from None
        with self._lock:
            self.fetches += 1
        connection = http.client.HTTPSConnection(
            host, port, timeout=self.timeout, context=self.context
        )
        try:
            connection.connect()
            connection.request("GET", target, headers={"User-Agent": "newsletter", "Accept": "*/*"})
            _left(connection, deadline)
            response = connection.getresponse()
            if response.status != 200:
                raise SnsUnreachable(f"answered {response.status} {response.reason}", where=where)
            length = response.getheader("Content-Length", "")
            if length.isdigit() and int(length) > self.max_bytes:
                raise SnsUnreachable(f"answered {length} bytes, over {self.max_bytes}", where=where)
            data = b""
            while True:
                _left(connection, deadline)
                chunk = response.read1(_CHUNK)
                if not chunk:
                    return data
                data += chunk
                if len(data) > self.max_bytes:
                    raise SnsUnreachable(f"answered over {self.max_bytes} bytes", where=where)
        except (OSError, http.client.HTTPException) as exc:  # timeouts, TLS, refused, garbled
            why = one_line(str(exc))[:200] or type(exc).__name__
            raise SnsUnreachable(
                f"cannot fetch it: {why}",
                where=where,
                hint="SNS will send the message again; check this machine's outbound HTTPS",
            ) from None
        finally:
            connection.close()


def _keep(cache: OrderedDict[str, Any], url: str, value: Any, size: int) -> None:
    cache[url] = value
    cache.move_to_end(url)
    while len(cache) > size:
        cache.popitem(last=False)


def _left(connection: http.client.HTTPSConnection, deadline: float) -> None:
    """Give the next read what is left of the fetch's time (TimeoutError when none is)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    if connection.sock is not None:
        connection.sock.settimeout(left)


def default_fetcher() -> SnsFetcher:
    """The real one: the system's trust store, SNS's hosts only."""
    return SnsFetcher(ssl.create_default_context())
