"""What an editor can do to a date's edition: test send, build or rebuild, hold, send now.

Every action is a POST with the session's CSRF token (`editor_only` checks it).
Those that change what subscribers get (build, hold, un-hold, send now) first
answer with a confirmation page; only its form, which adds `confirm=yes`, acts.
Each answers with a redirect to the edition page and a message saying what
happened, and writes one `editor_action` log line.

What may be done is decided by the application layer (`newsletter.app`: hold,
unhold, rebuild, prepare_send, send_test), whose status changes are the
store's compare-and-set: a click that races the scheduler (or a second click)
is refused with a message instead of, say, holding an edition that is already
going out. These handlers only turn its outcomes into messages, and run it in
the threadpool so the server's event loop never waits on the store or the
renderer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter import app as core
from newsletter.delivery import Outcome
from newsletter.errors import NewsletterError
from newsletter.store import editions as edition_store
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


def _no_articles(day: dt.date) -> Refused:
    return Refused(f"the source has no articles for {day}: there is no edition")


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
        try:  # the store and the renderer run in a thread inside send_test
            outcome = await core.send_test(state.engine, state.settings, day, given)
        except NewsletterError as exc:
            raise Refused(f"test to {given} not sent: {exc}") from None
        match outcome:
            case core.InvalidAddress():
                raise Refused(f"not sent: {outcome.reason}")
            case core.NoArticles():
                raise _no_articles(day)
        request.session[TEST_ADDRESS] = outcome.address
        result = outcome.result
        if result.outcome is not Outcome.SENT:
            raise Refused(f"test to {outcome.address} was refused by the relay: {result.reply}")
        return f"Test sent to {outcome.address}. The relay answered: {result.reply}"

    return await _act(request, "test_send", day, body, to=given)


# ── build / rebuild ───────────────────────────────────────────────────────────


@editor_only
async def build(request: Request) -> Response:
    """Build and store the date's edition, or render a stored, unsent one afresh."""
    day = path_day(request)
    if day is None:
        return _no_date(request)
    state = request.app.state
    stored = await run_in_threadpool(edition_store.get_edition, state.engine, day)
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
        try:
            outcome = await run_in_threadpool(core.rebuild, state.engine, state.settings, day)
        except NewsletterError as exc:
            if stored is None:
                raise Refused(f"cannot build the edition: {exc}") from None
            raise Refused(f"not rebuilt, the stored edition is kept: {exc}") from None
        match outcome:
            case core.Built(stored=built):
                count = built.article_count
                return f"Built and stored: {built.rendered.subject} ({count} articles)."
            case core.Rebuilt(stored=fresh):
                return f"Rebuilt: {fresh.rendered.subject} ({fresh.article_count} articles)."
            case core.NoArticles():
                raise _no_articles(day)
            case core.Refused(reason=core.Refusal.NO_ARTICLES_NOW):
                raise Refused("not rebuilt: the source has no articles for this date any more")
            case core.Refused():
                raise Refused(f"not rebuilt: {_STARTED}")

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
    state = request.app.state

    async def body() -> str:
        try:
            outcome = await run_in_threadpool(core.hold, state.engine, state.settings, day)
        except NewsletterError as exc:
            raise Refused(f"cannot build the edition: {exc}") from None
        match outcome:
            case core.Changed():
                return f"The edition of {day} is on hold: it will not be sent."
            case core.Unchanged():
                return "The edition was already on hold."
            case core.NoArticles():
                raise _no_articles(day)
            case core.Refused():
                raise Refused(f"not held: {_STARTED}")

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
        outcome = await run_in_threadpool(core.unhold, engine, day)
        if isinstance(outcome, core.Refused):
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
    active = await run_in_threadpool(core.active_subscribers, state.engine)
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
        try:
            start = await run_in_threadpool(core.prepare_send, state.engine, state.settings, day)
        except NewsletterError as exc:
            raise Refused(f"cannot build the edition: {exc}") from None
        match start:
            case core.NoArticles():
                raise _no_articles(day)
            case core.Held():
                raise Refused("not sent: the edition is on hold (un-hold it first)")
            case core.AlreadySent():
                raise Refused("not sent: this edition has already been sent")
            case core.Paused() | core.TooManyComplaints():  # the scheduler's; send-now resumes
                raise Refused("not sent: the edition's send is paused")
        if sends.running(day):  # checked again: a second click may have started it meanwhile
            raise Refused("a send of this edition is already running")
        sends.start(state.engine, state.settings, start)
        resumed = f" Resuming past a paused send ({start.resumed})." if start.resumed else ""
        return f"Sending to {active:,} active subscribers.{resumed} Reload this page to follow it."

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
