"""What people write by hand to send a newsletter: the benchmark's comparison point.

A plain loop over the subscriber CSV with the standard library's `smtplib` over
ONE reused connection. It is meant to be honest, not a straw man, so it does
what a careful person would: render the edition once (the project's Jinja2
templates, then premailer to inline the CSS, exactly once), and per recipient
only `str.replace` the personal bits (greeting, unsubscribe link with an HMAC
token, "sent to"), build an `email.message.EmailMessage` (text part, then the
HTML alternative; From/To/Subject/Date/Message-ID/List-Unsubscribe and the
RFC 8058 one-click header) and `send_message` it.

What it does not do, and `newsletter send` does: record each delivery durably
(a crash means starting over or guessing), retry 4xx with backoff, re-check
unsubscribes right before each message, keep several connections busy.

    python -m bench.handwritten --host 127.0.0.1 --port 2525 --csv subs.csv \
        --articles DIR --date 2026-11-26 --templates templates

Prints one JSON line: {"sent": n, "failed": n, "seconds": wall time of the loop,
"render_seconds": the one-off render}.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import hmac
import html
import json
import logging
import smtplib
import sys
import time
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import premailer

from newsletter.articles import open_source
from newsletter.config import load_settings
from newsletter.edition import build_edition
from newsletter.render import make_environment

# Placeholders the once-rendered edition carries; replaced per recipient.
GREETING, UNSUBSCRIBE, SENT_TO, VIEW_ONLINE = (
    "XXGREETINGXX",
    "XXUNSUBSCRIBEXX",
    "XXSENTTOXX",
    "XXVIEWONLINEXX",
)


def render_once(templates: Path, articles: str, day: dt.date, name: str, postal: str):  # noqa: ANN201
    """Jinja2 once, premailer once: the (subject, html, text) templates with placeholders."""
    settings = load_settings(articles_source=articles, templates_dir=templates, name=name)
    edition = build_edition(open_source(articles, settings.zone).articles_for(day), settings)
    if edition is None:
        raise SystemExit(f"no articles for {day} in {articles}")
    env = make_environment(templates)
    context = {
        "edition": edition,
        "settings": SimpleNamespace(language="en", name=name, postal_address=postal),
        "slots": {
            "greeting": GREETING,
            "unsubscribe_url": UNSUBSCRIBE,
            "view_online_url": VIEW_ONLINE,
            "sent_to": SENT_TO,
            "name": "",
            "email": "",
        },
    }
    page = env.get_template("edition.html.j2").render(context)
    page = premailer.Premailer(
        page,
        disable_link_rewrites=True,
        strip_important=False,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,  # mso-* and other email-only properties
    ).transform()
    text = env.get_template("edition.txt.j2").render(context)
    return edition.subject, page, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--articles", required=True)
    parser.add_argument("--date", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--templates", type=Path, default=Path("templates"))
    parser.add_argument("--from-address", default="newsletter@example.com")
    parser.add_argument("--from-name", default="The Daily Brief")
    parser.add_argument("--base-url", default="https://news.example.com")
    parser.add_argument("--secret", default="a-long-random-secret")
    args = parser.parse_args(argv)

    started = time.monotonic()
    subject, page, text = render_once(
        args.templates, args.articles, args.date, args.from_name, "1 Example Street, Springfield"
    )
    render_seconds = time.monotonic() - started
    domain = args.from_address.rsplit("@", 1)[1]
    sender = formataddr((args.from_name, args.from_address))
    view_online = f"{args.base_url}/archive/{args.date.isoformat()}"
    page = page.replace(VIEW_ONLINE, html.escape(view_online))
    text = text.replace(VIEW_ONLINE, view_online)
    key = args.secret.encode()

    sent = failed = 0
    loop_started = time.monotonic()
    with (
        args.csv.open(encoding="utf-8", newline="") as rows,
        smtplib.SMTP(args.host, args.port, local_hostname=domain) as smtp,
    ):
        for row in csv.DictReader(rows):
            email, name = row["email"].strip(), (row.get("name") or "").strip()
            token = hmac.new(key, email.lower().encode(), hashlib.sha256).hexdigest()[:32]
            unsubscribe = f"{args.base_url}/unsubscribe?email={quote(email)}&token={token}"
            greeting = f"Hello {name}," if name else "Hello,"
            sent_to = f"This email was sent to {email}."
            body_html = (
                page.replace(GREETING, html.escape(greeting))
                .replace(UNSUBSCRIBE, html.escape(unsubscribe))
                .replace(SENT_TO, html.escape(sent_to))
            )
            body_text = (
                text.replace(GREETING, greeting)
                .replace(UNSUBSCRIBE, unsubscribe)
                .replace(SENT_TO, sent_to)
            )
            message = EmailMessage()
            message["From"] = sender
            message["To"] = formataddr((name, email))
            message["Subject"] = subject
            message["Date"] = formatdate(localtime=True)
            message["Message-ID"] = make_msgid(domain=domain)
            message["List-Unsubscribe"] = (
                f"<{unsubscribe}>, <mailto:unsubscribe@{domain}?subject=unsubscribe>"
            )
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            message.set_content(body_text)
            message.add_alternative(body_html, subtype="html")
            try:
                smtp.send_message(message)
                sent += 1
            except smtplib.SMTPRecipientsRefused:
                failed += 1
    seconds = time.monotonic() - loop_started
    result = {"sent": sent, "failed": failed, "seconds": seconds, "render_seconds": render_seconds}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
