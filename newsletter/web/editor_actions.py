"""What an editor can do to a date's edition: test send, build or rebuild, hold, send now.

Every action is a POST with the session's CSRF token (`editor_only` checks it).
Those that change what subscribers get (build, hold, un-hold, send now) first
answer with a confirmation page; only its form, which adds `confirm=yes`, acts.
Each answers with a redirect to the edition page and a message saying what
happened, and writes one `editor_action` log line.

Status changes are compare-and-set in the store, so a click that races the
scheduler (or a second click) fails with a message instead of, say, holding an
edition that is already going out. An edition's content is fixed once its
send starts, so every subscriber gets the same email.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.delivery import Outcome
from newsletter.errors import NewsletterError
from newsletter.models import SubscriberStatus
from newsletter.pipeline import build_preview, prepare_edition, send_test
from newsletter.store import editions as edition_store
from newsletter.store import subscribers as subscriber_store
from newsletter.store.editions import EditionStatus, StoredEdition
from newsletter.subscribers import validate_email
from newsletter.web.editor_common import (
    confirm_page,
    confirmed,
    edition_url,
    flash,
    log_action,
    message_page,
    path_day,
    redirect,
)
from newsletter.web.editor_pages import TEST_ADDRESS
from newsletter.web.editor_sends import sends_of
from newsletter.web.security import editor_only

_STARTED = "its send has started, so its content is fixed and every subscriber gets the same email"


class Refused(Exception):
    """An action that cannot be done now; the message is shown to the editor."""


def _no_date(request: Request) -> Response:
    return message_page(request, "No such date", "Dates look like 2026-11-25.", 404)


async def _stored_or_built(request: Request, day: dt.date) -> StoredEdition:
    """The date's stored edition, built and stored first if there is none yet."""
    state = request.app.state
    stored = edition_store.get_edition(state.engine, day)
    if stored is not None:
        return stored
    try:
        prepared = await run_in_threadpool(prepare_edition, state.engine, state.settings, day)
    except NewsletterError as exc:
        raise Refused(f"cannot build the edition: {exc}") from None
    if prepared is None:
        raise Refused(f"the source has no articles for {day}: there is no edition")
    return prepared.stored


async def _act(
    request: Request, action: str, day: dt.date, body: Callable[[], Awaitable[str]], **fields: str
) -> Response:
    """Run one action's body, turn a refusal into a message, log it, go back to the page."""
    try:
        text = await body()
    except Refused as exc:
        flash(request, "error", str(exc))
        log_action(request, action, f"refused: {exc}", date=day.isoformat(), **fields)
    else:
        flash(request, "ok", text)
        log_action(request, action, "ok", date=day.isoformat(), **fields)
    return redirect(edition_url(day))


# ── test send ─────────────────────────────────────────────────────────────────


@editor_only
async def test_send(request: Request) -> Response:
    """Send the real edition to any address; recorded apart from subscriber deliveries."""
    day = path_day(request)
    if day is None:
        return _no_date(request)
    form = await request.form()
    state = request.app.state
    given = str(form.get("email", "")).strip()

    async def body() -> str:
        try:
            address = validate_email(given)
        except NewsletterError as exc:
            raise Refused(f"not sent: {exc.message}") from None
        request.session[TEST_ADDRESS] = address
        stored = await _stored_or_built(request, day)
        try:
            result = await send_test(state.engine, state.settings, stored, address)
        except NewsletterError as exc:
            raise Refused(f"test to {address} not sent: {exc}") from None
        if result.outcome is not Outcome.SENT:
            raise Refused(f"test to {address} was refused by the relay: {result.reply}")
        return f"Test sent to {address}. The relay answered: {result.reply}"

    return await _act(request, "test_send", day, body, to=given)


# ── build / rebuild ───────────────────────────────────────────────────────────


@editor_only
async def build(request: Request) -> Response:
    """Build and store the date's edition, or render a stored, unsent one afresh."""
    day = path_day(request)
    if day is None:
        return _no_date(request)
    state = request.app.state
    stored = edition_store.get_edition(state.engine, day)
    if not await confirmed(request):
        verb = "Rebuild" if stored else "Build"
        lines = [
            f"This renders the edition of {day} from the articles as they are now and stores "
            "it: that is what subscribers will get.",
        ]
        if stored:
            lines.append(f"It replaces the stored edition ({stored.rendered.subject!r}).")
        return _confirm(request, day, "build", f"{verb} the edition of {day}?", lines, verb)

    async def body() -> str:
        if stored is None:
            built = await _stored_or_built(request, day)
            return f"Built and stored: {built.rendered.subject} ({built.article_count} articles)."
        if stored.status not in (EditionStatus.BUILT, EditionStatus.HELD):
            raise Refused(f"not rebuilt: {_STARTED}")
        try:
            fresh = await run_in_threadpool(build_preview, state.settings, day)
        except NewsletterError as exc:
            raise Refused(f"not rebuilt, the stored edition is kept: {exc}") from None
        if fresh is None:
            raise Refused("not rebuilt: the source has no articles for this date any more")
        if not edition_store.replace_edition(
            state.engine, stored.id, fresh.rendered, fresh.article_count
        ):
            raise Refused(f"not rebuilt: {_STARTED}")
        return f"Rebuilt: {fresh.rendered.subject} ({fresh.article_count} articles)."

    return await _act(request, "build", day, body)


# ── hold / un-hold ────────────────────────────────────────────────────────────


@editor_only
async def hold(request: Request) -> Response:
    """Skip a day: the edition is stored as held, and no send (scheduled or not) delivers it."""
    day = path_day(request)
    if day is None:
        return _no_date(request)
    if not await confirmed(request):
        lines = [
            f"Nobody will get the edition of {day}: the scheduler and `newsletter send` skip "
            "a held edition. You can un-hold it later.",
        ]
        return _confirm(request, day, "hold", f"Hold the edition of {day}?", lines, "Hold")
    engine = request.app.state.engine

    async def body() -> str:
        stored = await _stored_or_built(request, day)
        if stored.status is EditionStatus.HELD:
            return "The edition was already on hold."
        if stored.status is not EditionStatus.BUILT or not edition_store.change_edition_status(
            engine, stored.id, expected=EditionStatus.BUILT, new=EditionStatus.HELD
        ):
            raise Refused(f"not held: {_STARTED}")
        return f"The edition of {day} is on hold: it will not be sent."

    return await _act(request, "hold", day, body)


@editor_only
async def unhold(request: Request) -> Response:
    """Release a held edition: it goes out with the next scheduled (or manual) send."""
    day = path_day(request)
    if day is None:
        return _no_date(request)
    if not await confirmed(request):
        lines = [
            f"The edition of {day} becomes ready to send again: a scheduled run or "
            "`newsletter send` will deliver it.",
        ]
        return _confirm(request, day, "unhold", f"Un-hold the edition of {day}?", lines, "Un-hold")
    engine = request.app.state.engine

    async def body() -> str:
        stored = edition_store.get_edition(engine, day)
        if stored is None or not edition_store.change_edition_status(
            engine, stored.id, expected=EditionStatus.HELD, new=EditionStatus.BUILT
        ):
            raise Refused("not changed: the edition is not on hold")
        return f"The edition of {day} is no longer on hold."

    return await _act(request, "unhold", day, body)


# ── send now ──────────────────────────────────────────────────────────────────


@editor_only
async def send_now(request: Request) -> Response:
    """Deliver the edition to every active subscriber now, in the background."""
    day = path_day(request)
    if day is None:
        return _no_date(request)
    state = request.app.state
    active = subscriber_store.count_by_status(state.engine)[SubscriberStatus.ACTIVE]
    if not await confirmed(request):
        lines = [
            f"This sends the edition of {day} now to every active subscriber who has not had "
            f"it yet ({active:,} active). It cannot be undone.",
            "Send yourself a test first if you have not.",
        ]
        title = f"Send the edition of {day} now?"
        return _confirm(request, day, "send", title, lines, "Send now", danger=True)
    sends = sends_of(request)

    async def body() -> str:
        if sends.running(day):
            raise Refused("a send of this edition is already running")
        stored = await _stored_or_built(request, day)
        if stored.status is EditionStatus.HELD:
            raise Refused("not sent: the edition is on hold (un-hold it first)")
        if stored.status is EditionStatus.SENT:
            raise Refused("not sent: this edition has already been sent")
        if sends.running(day):  # checked again: a second click may have started it meanwhile
            raise Refused("a send of this edition is already running")
        if stored.status is EditionStatus.BUILT and not edition_store.change_edition_status(
            state.engine, stored.id, expected=EditionStatus.BUILT, new=EditionStatus.SENDING
        ):
            current = edition_store.get_edition(state.engine, day)
            status = current.status.value if current else "gone"
            raise Refused(f"not sent: the edition changed meanwhile (it is now {status})")
        sends.start(state.engine, state.settings, stored)
        return f"Sending to {active:,} active subscribers. Reload this page to follow it."

    return await _act(request, "send_now", day, body)


def _confirm(
    request: Request,
    day: dt.date,
    action: str,
    title: str,
    lines: list[str],
    button: str,
    *,
    danger: bool = False,
) -> Response:
    return confirm_page(
        request,
        title=title,
        lines=lines,
        action=f"{edition_url(day)}/{action}",
        button=button,
        cancel=edition_url(day),
        danger=danger,
    )
