"""What subscribers reach from an email or a form: unsubscribe, sign-up and confirm pages.

Links from emails carry a signed token and act without a login, a cookie or a
CSRF token: the signature is the proof. A GET never changes anything (mail
scanners and link previews fetch every URL in a message); each page has one
button that POSTs. RFC 8058 one-click is that same POST, sent by the mail
provider with the body `List-Unsubscribe=One-Click`.

The sign-up form is an ordinary form with a CSRF token and a honeypot field;
the rules of double opt-in and the sign-up limits live in `newsletter.signup`
(over a limit: 429, Retry-After, nothing stored or sent). A confirmation link
holds a nonce: its page and its button work only while it is the sign-up's
latest link, and once; the page's name field is the one place a sign-up's
name is shown or changed, to the holder of that link. The archive and
the operators' endpoints are in `archive.py` and `ops.py`; `ROUTES` holds all.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from newsletter import signup
from newsletter.errors import InputError
from newsletter.logs import event
from newsletter.subscribers import unsubscribe
from newsletter.tokens import UNSUBSCRIBE_MAX_AGE, Purpose
from newsletter.web import archive, ops
from newsletter.web.proxy import client_address
from newsletter.web.security import check_csrf

log = logging.getLogger("newsletter.web")

HONEYPOT = "website"  # a field people never see; bots that fill every field fill it
TOKEN_PAGE_HEADERS = {
    "Cache-Control": "no-store",  # a page naming an address is nobody's cache's business
    "Referrer-Policy": "no-referrer",  # never pass the token on to another site
    "X-Robots-Tag": "noindex",
}


def mask_email(email: str) -> str:
    """`a•••@example.com`: enough for its owner to recognise, not for a passer-by to read."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def _with_headers(response: Response) -> Response:
    response.headers.update(TOKEN_PAGE_HEADERS)
    return response


def _bad_link(request: Request, error: InputError, *, kind: str) -> Response:
    """A refused token: 400 and a page saying what to do instead; nothing was changed."""
    pages = request.app.state.pages
    response = pages.render(
        request, "bad_link.html", status_code=400, kind=kind, message=error.message, hint=error.hint
    )
    return _with_headers(response)


async def _form(request: Request) -> FormData:
    """The posted form, or an empty one when the body is not a form (a provider's odd POST)."""
    try:
        return await request.form()
    except Exception:  # noqa: BLE001 (python-multipart raises several kinds on malformed bodies)
        return FormData()


# Unsubscribe


def unsubscribe_help(request: Request) -> Response:
    """Where the archive's neutral unsubscribe link leads: how to unsubscribe without a token."""
    return request.app.state.pages.render(request, "unsubscribe_help.html")


def unsubscribe_page(request: Request) -> Response:
    """GET: show whose subscription this is and one button. Never unsubscribes."""
    token = request.path_params["token"]
    try:
        email = request.app.state.signer.read(
            Purpose.UNSUBSCRIBE, token, max_age=UNSUBSCRIBE_MAX_AGE
        )
    except InputError as exc:
        return _bad_link(request, exc, kind="unsubscribe")
    page = request.app.state.pages.render(
        request, "unsubscribe.html", token=token, masked=mask_email(email), done=False
    )
    return _with_headers(page)


async def unsubscribe_post(request: Request) -> Response:
    """POST: unsubscribe at once (RFC 8058 one-click, or the page's button); always 200.

    An address that is not on the list, or already left, gets the same answer
    and nothing changes, so the endpoint never tells who is subscribed.
    """
    token = request.path_params["token"]
    try:
        email = request.app.state.signer.read(
            Purpose.UNSUBSCRIBE, token, max_age=UNSUBSCRIBE_MAX_AGE
        )
    except InputError as exc:
        return _bad_link(request, exc, kind="unsubscribe")
    form = await _form(request)
    via = "page" if form.get("from") == "page" else "one-click"
    changed = await run_in_threadpool(unsubscribe, request.app.state.engine, email)
    event(log, "unsubscribe", via=via, recipient=email, changed=changed)
    page = request.app.state.pages.render(
        request, "unsubscribe.html", token=token, masked=mask_email(email), done=True
    )
    return _with_headers(page)


# Sign-up


def subscribe_form(request: Request) -> Response:
    return request.app.state.pages.render(
        request, "subscribe.html", email="", given_name="", error=""
    )


async def subscribe(request: Request) -> Response:
    """Sign-up, CSRF-checked. A bot (honeypot filled) gets the success page; nothing is stored.

    Over a sign-up limit: 429 with Retry-After and a page saying to try later.
    """
    pages = request.app.state.pages
    form = await _form(request)
    email = str(form.get("email", "")).strip()[:320]
    name = str(form.get("name", "")).strip()[:200]

    def again(status: int, error: str) -> Response:
        return pages.render(
            request, "subscribe.html", status_code=status, email=email, given_name=name, error=error
        )

    if not await check_csrf(request):
        return again(403, "This form had expired, so nothing was sent. Please subscribe again.")
    if str(form.get(HONEYPOT, "")).strip():
        event(log, "signup_refused", reason="honeypot", ip=_client_ip(request))
        return pages.render(request, "check_inbox.html", email=email)
    settings, engine, signer = (
        request.app.state.settings,
        request.app.state.engine,
        request.app.state.signer,
    )
    try:
        result = await signup.sign_up(
            engine, settings, signer, email, name, client=_client_ip(request)
        )
    except InputError as exc:
        return again(400, exc.message)
    if result.outcome is signup.SignupOutcome.LIMITED and result.refusal is not None:
        wait = int(result.refusal.retry_after.total_seconds())
        page = pages.render(request, "too_many.html", status_code=429, minutes=-(-wait // 60))
        page.headers["Retry-After"] = str(wait)
        return page
    if result.outcome is signup.SignupOutcome.FAILED:
        return again(
            503,
            "We could not send the confirmation email just now: our mail server did not "
            "accept it. Your sign-up is saved; please try again in a few minutes.",
        )
    return pages.render(request, "check_inbox.html", email=result.email)


def _confirm_link(request: Request) -> tuple[str, str]:
    """(address, nonce) of the path's confirmation token; InputError when not a valid one."""
    settings, signer = request.app.state.settings, request.app.state.signer
    return signup.read_link(settings, signer, request.path_params["token"])


async def confirm_page(request: Request) -> Response:
    """GET of the emailed link: one Confirm button, and the name to greet them by.

    Never confirms (scanners open links). Shown only while the link's nonce is
    the sign-up's, so the stored name is seen by the holder of the latest link
    alone: the mailbox's owner.
    """
    try:
        email, nonce = _confirm_link(request)
    except InputError as exc:
        return _bad_link(request, exc, kind="confirm")
    name = await run_in_threadpool(signup.pending_name, request.app.state.engine, email, nonce)
    if name is None:
        return _bad_link(request, signup.old_link(), kind="confirm")
    page = request.app.state.pages.render(
        request,
        "confirm.html",
        token=request.path_params["token"],
        masked=mask_email(email),
        given_name=name,
        done=False,
    )
    return _with_headers(page)


async def confirm_post(request: Request) -> Response:
    """The Confirm button: active from now on, with consent (time, IP, user agent) recorded,
    and the name as its owner left it in the form (a POST without the field keeps it)."""
    try:
        email, nonce = _confirm_link(request)
    except InputError as exc:
        return _bad_link(request, exc, kind="confirm")
    form = await _form(request)
    name = str(form["name"])[:200] if "name" in form else None
    outcome = await run_in_threadpool(
        signup.confirm,
        request.app.state.engine,
        email,
        nonce,
        name=name,
        ip=_client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    if outcome is not signup.ConfirmOutcome.CONFIRMED:
        return _bad_link(request, signup.old_link(), kind="confirm")
    page = request.app.state.pages.render(
        request,
        "confirm.html",
        token=request.path_params["token"],
        masked=mask_email(email),
        given_name="",
        done=True,
    )
    return _with_headers(page)


def _client_ip(request: Request) -> str:
    """The client's address, by the one rule of `proxy.py` (TRUSTED_PROXIES)."""
    return client_address(request)


ROUTES: list[BaseRoute] = [
    Route("/subscribe", subscribe_form, methods=["GET"]),
    Route("/subscribe", subscribe, methods=["POST"]),
    Route("/confirm/{token}", confirm_page, methods=["GET"]),
    Route("/confirm/{token}", confirm_post, methods=["POST"]),
    Route("/unsubscribe", unsubscribe_help, methods=["GET"]),
    Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
    Route("/unsubscribe/{token}", unsubscribe_post, methods=["POST"]),
    *archive.ROUTES,
    *ops.ROUTES,
]
