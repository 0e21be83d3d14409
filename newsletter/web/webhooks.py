"""`POST /webhooks/<provider>`: bounces and complaints a sending provider reports.

A thin adapter: `bounces/providers.py` verifies a request and reads its events,
`bounces/record.py` records each, as it records what comes back to the bounce
address (hard bounces count to BOUNCE_LIMIT, soft ones to SOFT_BOUNCE_LIMIT, a
complaint unsubscribes). The answers:

    200  verified; a JSON summary of what became of each event, even when nothing
         matched a delivery (a provider retries anything else for days)
    400  the body is not the provider's JSON         401/403  not the provider's
    404  no such provider, or it is not configured   413  over MAX_BODY
    503  cannot verify or record now (the SNS certificate host, the database):
         the provider sends it again later, and the fingerprint counts it once

A refused request changes nothing and is never read further; refusals are
logged at WARNING at most once a REFUSAL_LOG_EVERY per provider, with a count,
and never with a traceback: anyone can post to these URLs.

Each event's fingerprint is the provider's own id for it (SNS MessageId, Mailgun
`event-data.id`, Postmark `ID`, SendGrid `sg_event_id`), with the recipient, or
a hash of the event when it has none: a provider's retry of an event is a
DUPLICATE. One bad event in a batch is that event's result ("unreadable").

Matching: a verified provider is believed about whom it sent to, so its reports
are matched by the Message-ID they quote with the recipient they name (our
`<date.id.slot@domain>` ids, `record.match_of` without VERP), else by that
recipient's latest delivery (`proven_sender`: Postmark reports its own MessageID,
and SES or SendGrid may too), whether or not BOUNCE_ADDRESS is set: providers put
their own address in the envelope, so the VERP token does not come back to them.

CSRF and the session rules do not apply here (providers post without our
cookies); the server's body deadline (HTTP_BODY_TIMEOUT) does, and MAX_BODY.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.bounces import BounceReport
from newsletter.bounces.providers import (
    WebhookRefused,
    mailgun_reports,
    postmark_reports,
    sendgrid_reports,
    ses_reports,
    verify_mailgun,
    verify_postmark,
    verify_sendgrid,
    verify_sns,
)
from newsletter.bounces.record import BounceOutcome, apply_report
from newsletter.bounces.sns_certificates import SnsFetcher, SnsUnreachable
from newsletter.config import Settings
from newsletter.errors import StoreError
from newsletter.hygiene import one_line
from newsletter.logs import event

log = logging.getLogger("newsletter.webhooks")

# SendGrid posts batches of up to ~1,000 events: 1,000 bounces with Gmail's long reason,
# two categories and two custom args measured 705 KB of JSON (clicks: 517 KB). SNS
# messages are at most 256 KB; Mailgun and Postmark post one event (a few KB).
MAX_BODY = 1024 * 1024
REFUSAL_LOG_EVERY = 60.0  # seconds between refusal warnings, per provider
UNREADABLE = "unreadable"  # an event of a verified batch that is not an event
NOT_A_REPORT = "skipped"  # a delivery, an open, a click: nothing to record
_NO_CACHE = {"Cache-Control": "no-store"}


class BadPayload(ValueError):
    """The body is not what the provider posts (not its JSON): 400."""


@dataclass
class Refusals:
    """Requests not taken (refused, malformed, not processable now), per kind and provider
    since the last warning: at most one warning a REFUSAL_LOG_EVERY for each, with a count,
    so anyone posting junk in a loop costs the log one line a minute."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    warned_at: dict[tuple[str, str], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, name: str, provider: str, why: str) -> None:
        key, now = (name, provider), time.monotonic()
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            last = self.warned_at.get(key)
            if last is not None and now - last < REFUSAL_LOG_EVERY:
                return
            count, self.counts[key], self.warned_at[key] = self.counts[key], 0, now
        why = one_line(why)[:200]
        event(log, name, level=logging.WARNING, provider=provider, count=count, why=why)


@dataclass(frozen=True)
class Call:
    """What one verified-or-not request brings to a provider's handler."""

    settings: Settings
    headers: Headers
    body: bytes
    sns: SnsFetcher | None


@dataclass(frozen=True)
class Item:
    """One event of a verified request: its report (None: not a bounce or complaint), its id."""

    report: BounceReport | None
    event_id: str
    unreadable: str = ""  # why, when the event could not be read


# The providers: (is it configured?, verify and read the request into items)


def _ses_configured(settings: Settings) -> bool:
    return bool(settings.ses_topics)


def _ses(call: Call) -> list[Item]:
    message = _json_object(call.body)
    if call.sns is None:  # configured but no fetcher: cannot check a certificate
        raise SnsUnreachable("no SNS certificate fetcher")
    verify_sns(
        message,
        fetch_certificate=call.sns.certificate,
        topic_arns=call.settings.ses_topics,
        host_pattern=call.sns.host_pattern,
    )
    kind = message.get("Type")
    topic = one_line(str(message.get("TopicArn", "")))
    if kind == "SubscriptionConfirmation":
        call.sns.get(str(message.get("SubscribeURL", "")))
        event(log, "sns_subscription_confirmed", topic=topic)
        return []
    if kind == "UnsubscribeConfirmation":  # someone unsubscribed us at SNS: say so, do nothing
        event(log, "sns_unsubscribed", level=logging.WARNING, topic=topic)
        return []
    return _items(partial(ses_reports, message), message.get("MessageId"), message)


def _mailgun_configured(settings: Settings) -> bool:
    return bool(settings.mailgun_signing_key.get_secret_value())


def _mailgun(call: Call) -> list[Item]:
    payload = _json_object(call.body)
    verify_mailgun(payload, signing_key=call.settings.mailgun_signing_key.get_secret_value())
    data = payload.get("event-data")
    if not isinstance(data, dict):
        return [Item(None, "", "event-data is not an object")]
    return _items(partial(mailgun_reports, payload), data.get("id"), data)


def _postmark_configured(settings: Settings) -> bool:
    return bool(settings.postmark_webhook_user)


def _postmark(call: Call) -> list[Item]:
    verify_postmark(  # before reading anything of the body
        call.headers.get("authorization", ""),
        user=call.settings.postmark_webhook_user,
        password=call.settings.postmark_webhook_password.get_secret_value(),
    )
    payload = _json_object(call.body)
    return _items(partial(postmark_reports, payload), payload.get("ID"), payload)


def _sendgrid_configured(settings: Settings) -> bool:
    return bool(settings.sendgrid_public_key)


def _sendgrid(call: Call) -> list[Item]:
    verify_sendgrid(  # the signature covers the raw body: checked before it is parsed
        call.body,
        signature=call.headers.get("x-twilio-email-event-webhook-signature", ""),
        timestamp=call.headers.get("x-twilio-email-event-webhook-timestamp", ""),
        public_key=call.settings.sendgrid_public_key,
    )
    events = _json(call.body)
    if not isinstance(events, list):
        raise BadPayload("a SendGrid event webhook posts a JSON array of events")
    items: list[Item] = []
    for index, one in enumerate(events):
        if not isinstance(one, dict):
            items.append(Item(None, "", f"event {index} is not an object"))
            continue
        items += _items(partial(sendgrid_reports, [one]), one.get("sg_event_id"), one)
    return items


@dataclass(frozen=True)
class Provider:
    configured: Callable[[Settings], bool]
    read: Callable[[Call], list[Item]]
    refusal_status: int = 403
    challenge: str = ""  # WWW-Authenticate of a refusal (basic auth)


PROVIDERS: dict[str, Provider] = {
    "ses": Provider(_ses_configured, _ses),
    "mailgun": Provider(_mailgun_configured, _mailgun),
    "postmark": Provider(_postmark_configured, _postmark, 401, 'Basic realm="webhooks"'),
    "sendgrid": Provider(_sendgrid_configured, _sendgrid),
}


# The route


async def webhook(request: Request) -> Response:
    """Verify, read and record one provider's request (see the module doc for the answers)."""
    name = request.path_params["provider"]
    settings: Settings = request.app.state.settings
    provider = PROVIDERS.get(name)
    if provider is None or not provider.configured(settings):
        return _answer({"error": "no such webhook"}, 404)
    body = await _body(request)
    if body is None:
        return _answer({"error": f"the body is over {MAX_BODY} bytes"}, 413)
    call = Call(settings, request.headers, body, request.app.state.sns)
    try:
        summary = await run_in_threadpool(_handle, request.app.state.engine, name, provider, call)
    except WebhookRefused as exc:
        request.app.state.webhook_refusals.note("webhook_refused", name, exc.message)
        headers = {"WWW-Authenticate": provider.challenge} if provider.challenge else {}
        return _answer({"error": "refused"}, provider.refusal_status, headers)
    except BadPayload as exc:
        request.app.state.webhook_refusals.note("webhook_bad_body", name, str(exc))
        return _answer({"error": str(exc)}, 400)
    except (SnsUnreachable, StoreError) as exc:
        request.app.state.webhook_refusals.note("webhook_unavailable", name, str(exc))
        return _answer({"error": "cannot process it now; send it again later"}, 503)
    return _answer(summary, 200)


def _handle(engine: Any, name: str, provider: Provider, call: Call) -> dict[str, Any]:
    """Verify and read (WebhookRefused, BadPayload), then record each event (blocking)."""
    outcomes: dict[str, int] = {}
    items = provider.read(call)
    for item in items:
        outcome = _record(engine, call.settings, name, item)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    unreadable = [item.unreadable for item in items if item.unreadable]
    if unreadable:
        event(
            log,
            "webhook_events_unreadable",
            level=logging.WARNING,
            provider=name,
            count=len(unreadable),
            first=unreadable[0],
        )
    event(log, "webhook", provider=name, events=len(items), **outcomes)
    return {"provider": name, "events": len(items), "outcomes": outcomes}


def _record(engine: Any, settings: Settings, name: str, item: Item) -> str:
    if item.unreadable:
        return UNREADABLE
    if item.report is None:
        return NOT_A_REPORT
    outcome = BounceOutcome.IGNORED.value
    # One recipient per record: a complaint naming two addresses is two complaints.
    for recipient in item.report.recipients or ("",):
        report = replace(item.report, recipients=(recipient,) if recipient else ())
        basis = f"{name}:{item.event_id}:{recipient}"
        fingerprint = hashlib.sha256(basis.encode()).hexdigest()
        result = apply_report(
            engine, settings, None, report, fingerprint=fingerprint, source=name, proven_sender=True
        )
        outcome = result.outcome.value
    return outcome


def _items(read: Callable[[], list[BounceReport]], own_id: Any, raw: dict[str, Any]) -> list[Item]:
    """The reports of one provider event, under its own id (or a hash of the event).

    Any exception while reading it makes it unreadable: the batch's other events go on.
    """
    try:
        event_id = one_line(str(own_id or ""))[:200]
        if not event_id:
            canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
            event_id = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
        reports = read()
    except Exception as exc:  # hostile or broken input: a result, never a 500
        log.debug("unreadable webhook event", exc_info=exc)
        return [Item(None, "", f"{type(exc).__name__}: {one_line(str(exc))}"[:200])]
    return [Item(report, event_id) for report in reports] or [Item(None, event_id)]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadPayload("the body is not JSON") from None


def _json_object(body: bytes) -> dict[str, Any]:
    value = _json(body)
    if not isinstance(value, dict):
        raise BadPayload("the body is not a JSON object")
    return value


async def _body(request: Request) -> bytes | None:
    """The body, or None when it is (or says it is) over MAX_BODY: never read past it."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return None
    data = bytearray()
    async for chunk in request.stream():  # a client that leaves: ClientDisconnect, quiet
        data += chunk
        if len(data) > MAX_BODY:
            return None
    return bytes(data)


def _answer(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=_NO_CACHE | (headers or {}))


ROUTES: list[BaseRoute] = [Route("/webhooks/{provider}", webhook, methods=["POST"])]
