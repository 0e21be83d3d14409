"""An Atom 1.0 feed (RFC 4287) of the archive, built with ElementTree so escaping is never ours.

Pure: entries in, bytes out. Each entry's id is its permanent archive URL
(stable, unique, dereferenceable); times are UTC in RFC 3339. Characters XML
1.0 cannot carry at all (most C0 controls) are removed from every text.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

ATOM = "http://www.w3.org/2005/Atom"
CONTENT_TYPE = "application/atom+xml; charset=utf-8"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True)
class Entry:
    url: str  # the permalink, also the entry's id
    title: str
    updated: dt.datetime  # naive datetimes are taken as UTC
    summary: str = ""
    content: str = ""  # plain text


@dataclass(frozen=True)
class Feed:
    title: str
    self_url: str  # the feed's own URL, also its id
    site_url: str  # the HTML page it mirrors (rel="alternate")
    author: str
    language: str = "en"
    subtitle: str = ""


def atom_feed(feed: Feed, entries: Sequence[Entry], *, now: dt.datetime | None = None) -> bytes:
    """The feed document. `updated` is the newest entry's, or `now` for an empty feed."""
    # The namespace is written as a plain `xmlns` attribute with unprefixed tags: ElementTree's
    # `default_namespace` refuses unprefixed attributes (rel, href), and prefixes would be noise.
    root = ET.Element("feed", {"xmlns": ATOM, "xml:lang": feed.language})
    _text(root, "id", feed.self_url)
    _text(root, "title", feed.title)
    if feed.subtitle:
        _text(root, "subtitle", feed.subtitle)
    newest = max((entry.updated for entry in entries), default=now or dt.datetime.now(dt.UTC))
    _text(root, "updated", _rfc3339(newest))
    ET.SubElement(root, "link", rel="self", type="application/atom+xml", href=feed.self_url)
    ET.SubElement(root, "link", rel="alternate", type="text/html", href=feed.site_url)
    author = ET.SubElement(root, "author")
    _text(author, "name", feed.author)
    _text(root, "generator", "newsletter")
    for entry in entries:
        item = ET.SubElement(root, "entry")
        _text(item, "id", entry.url)
        _text(item, "title", entry.title)
        _text(item, "updated", _rfc3339(entry.updated))
        ET.SubElement(item, "link", rel="alternate", type="text/html", href=entry.url)
        if entry.summary:
            _text(item, "summary", entry.summary)
        if entry.content:
            _text(item, "content", entry.content).set("type", "text")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _text(parent: ET.Element, name: str, value: str) -> ET.Element:
    element = ET.SubElement(parent, name)
    element.text = _NOT_XML.sub("", value)
    return element


def _rfc3339(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
