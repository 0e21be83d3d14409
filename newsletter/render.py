"""Render an edition once: Jinja2 for the HTML and text parts, premailer for the CSS.

The output is the same for every recipient. What differs per recipient (the
greeting, the unsubscribe and view-online URLs) is rendered as a *slot marker*,
a run of ASCII letters and digits that no escaping, URL quoting or line
wrapping can alter; `personalize.py` swaps markers for values with plain string
joins, so premailer (slow) runs once per edition and never per recipient.

Jinja and premailer exceptions are translated here into `RenderError`, naming
the template file and line, so a broken template stops a preview or a send
before the first message goes out. The templates are the package's own unless
NEWSLETTER_TEMPLATES_DIR names a folder that overrides them (`packaged.py`).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import textwrap
from pathlib import Path
from types import TracebackType

import jinja2
import premailer

from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.models import Article, Edition, RenderedEdition
from newsletter.packaged import builtin_templates, template_loader

HTML_TEMPLATE = "edition.html.j2"
TEXT_TEMPLATE = "edition.txt.j2"

#: Gmail hides everything past this many bytes of HTML behind "[Message clipped]",
#: including the unsubscribe link in the footer.
GMAIL_CLIP_BYTES = 102 * 1024

TEXT_WIDTH = 72

#: The personalization slots, in the order markers name them. `greeting` and
#: `sent_to` are derived from the name and the address (see `personalize.Slots`).
SLOT_NAMES = ("greeting", "name", "email", "unsubscribe_url", "view_online_url", "sent_to")

_MARKER_PREFIX = "NLSLOT"
_MARKER_SUFFIX = "END"


def slot_marker(slot_token: str, slot: str) -> str:
    """The marker standing for `slot` in an edition rendered with `slot_token`.

    `NLSLOT` + the token (lowercase hex) + the slot name in capitals without
    underscores + `END`, e.g. `NLSLOT0123456789abcdefUNSUBSCRIBEURLEND`. Only
    ASCII letters and digits, so HTML escaping, lxml's URL quoting of href
    attributes and text wrapping all leave it whole; the random token means
    article text cannot forge one.
    """
    return f"{_MARKER_PREFIX}{slot_token}{slot.replace('_', '').upper()}{_MARKER_SUFFIX}"


def slot_markers(slot_token: str) -> dict[str, str]:
    """Every slot name mapped to its marker: the `slots` object templates see."""
    return {slot: slot_marker(slot_token, slot) for slot in SLOT_NAMES}


# --- the Jinja environment ---------------------------------------------------


def wrap_text(
    value: object, width: int = TEXT_WIDTH, indent: str = "", first_indent: str | None = None
) -> str:
    """Wrap plain text at `width` columns, keeping blank-line paragraph breaks.

    Words are never split, so a URL or a slot marker longer than the width
    stays whole on its own line (and keeps working when clicked or filled).
    """
    wrapper = textwrap.TextWrapper(
        width=width,
        initial_indent=indent if first_indent is None else first_indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    paragraphs = [p for p in str(value).split("\n\n") if p.strip()]
    return "\n\n".join(wrapper.fill(" ".join(p.split())) for p in paragraphs)


def long_date(value: dt.date | None) -> str:
    """`Friday 6 March 2026`; empty for no date (so `select` drops it)."""
    if value is None:
        return ""
    return f"{value:%A} {value.day} {value:%B %Y}"


def http_url(value: str | None) -> str | None:
    """The URL if it is http(s), else None: a `javascript:` link never reaches a reader."""
    if value and value.strip().lower().startswith(("http://", "https://")):
        return value.strip()
    return None


def _autoescape(template_name: str | None) -> bool:
    return template_name is not None and template_name.endswith((".html.j2", ".html"))


def make_environment(templates_dir: Path | None) -> jinja2.Environment:
    """The one Jinja environment for edition templates.

    `templates_dir` is the operator's folder (None: the built-in templates);
    a file it lacks comes from the built-in ones. StrictUndefined turns a
    misspelt field into an error at preview time instead of a blank in 10,000
    inboxes; autoescape is on for HTML only.
    """
    env = jinja2.Environment(
        loader=template_loader(templates_dir),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap_text
    env.filters["longdate"] = long_date
    env.filters["http_url"] = http_url
    return env


# --- rendering ----------------------------------------------------------------


def render_edition(
    edition: Edition, settings: Settings, *, slot_token: str | None = None
) -> RenderedEdition:
    """Render both parts of `edition` once, with slot markers for per-recipient values.

    `slot_token` is random unless given (tests give one so output is stable).
    Raises RenderError naming the template and line when a template is broken.
    """
    token = slot_token if slot_token is not None else secrets.token_hex(8)
    if not token.isascii() or not token.isalnum():
        raise RenderError(
            f"slot token {token!r} must be ASCII letters and digits",
            where="render_edition",
            hint="leave slot_token unset to get a random one",
        )
    templates_dir = settings.templates_dir
    env = make_environment(templates_dir)
    context = {"edition": edition, "settings": settings, "slots": slot_markers(token)}
    html = _inline_css(_render(env, HTML_TEMPLATE, context, templates_dir))
    text = _render(env, TEXT_TEMPLATE, context, templates_dir)
    return RenderedEdition(
        date=edition.date,
        subject=edition.subject,
        preheader=edition.preheader,
        html=html,
        text=text,
        slot_token=token,
        warnings=edition_warnings(edition, html),
    )


def check_templates(settings: Settings) -> None:
    """Render a small built-in edition so a broken template fails before a send starts.

    Two articles, one with every field and one with none of the optional ones,
    so both sides of each `{% if %}` in the templates run at least once.
    """
    render_edition(_sample_edition(), settings, slot_token="0" * 16)


def edition_warnings(edition: Edition, html: str) -> tuple[str, ...]:
    """What the editor should fix before sending, though the email would still go out."""
    warnings: list[str] = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        warnings.append(
            f"the HTML part is {size / 1024:.0f} KB ({size:,} bytes); Gmail clips messages "
            f"over {GMAIL_CLIP_BYTES // 1024} KB and hides the rest, unsubscribe link included "
            "(use fewer articles or shorter summaries)"
        )
    for number, article in enumerate(edition.articles, start=1):
        label = _article_label(number, article)
        if not article.summary and not article.summary_html:
            warnings.append(f"{label} has no summary")
        if not article.url:
            warnings.append(f"{label} has no link to the full article")
        elif http_url(article.url) is None:
            warnings.append(
                f"{label} has a link that is not http(s) and is left out: {article.url}"
            )
        if article.image_url and http_url(article.image_url) is None:
            warnings.append(f"{label} has an image that is not http(s) and is left out")
        elif article.image_url and not (article.image_alt or "").strip():
            warnings.append(
                f"{label} has an image without alt text (readers who block images or use "
                "a screen reader get nothing; set image_alt)"
            )
    return tuple(warnings)


def _article_label(number: int, article: Article) -> str:
    headline = article.headline if len(article.headline) <= 60 else article.headline[:57] + "..."
    origin = f" ({article.origin})" if article.origin else ""
    return f"article {number} {headline!r}{origin}"


def _render(
    env: jinja2.Environment, name: str, context: dict[str, object], templates_dir: Path | None
) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        missing = str(exc.name or name)
        folders = _template_folders(templates_dir)
        raise RenderError(
            f"template {missing!r} not found in "
            + " nor in ".join(str(folder.resolve()) for folder in folders),
            where=str(folders[0] / missing),
            hint="put it in the folder NEWSLETTER_TEMPLATES_DIR names (a file missing there "
            "comes from the built-in templates; `newsletter init --templates` writes a copy "
            "of them), or reinstall the package if the built-in one is missing",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.name or name}:{exc.lineno}"
        raise RenderError(
            f"template syntax error: {exc.message}",
            where=where,
            hint="fix the Jinja tag or expression on that line; when Jinja says a block is "
            "not closed, the {% if %} or {% for %} missing its end tag opens further up",
        ) from None
    except jinja2.UndefinedError as exc:
        raise RenderError(
            f"undefined value: {exc.message}",
            where=_template_location(exc.__traceback__, templates_dir) or name,
            hint="check the spelling; templates get `edition` (date, subject, preheader, "
            "articles), `settings` and `slots` (greeting, name, email, unsubscribe_url, "
            "view_online_url, sent_to); test optional fields with {% if ... %}",
        ) from None
    except Exception as exc:  # a filter or expression failed while rendering
        raise RenderError(
            f"rendering failed: {type(exc).__name__}: {exc}",
            where=_template_location(exc.__traceback__, templates_dir) or name,
            hint="fix the expression on that line",
        ) from None


def _template_folders(templates_dir: Path | None) -> list[Path]:
    """Where templates are looked up, in order: the operator's folder, then the package's."""
    return [builtin_templates()] if templates_dir is None else [templates_dir, builtin_templates()]


def _template_location(tb: TracebackType | None, templates_dir: Path | None) -> str | None:
    """`name:line` of the innermost traceback frame that is a template file.

    Jinja rewrites the traceback of a rendering error so that template frames
    carry the template's file name and line, which is what a person can fix.
    A file of the operator's folder is named relative to it (`edition.html.j2:12`);
    a built-in one by its full path, so it is clear which of the two is at fault.
    """
    operator = templates_dir.resolve() if templates_dir is not None else None
    builtin = builtin_templates().resolve()
    found: str | None = None
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename).resolve()
        if operator is not None and path.is_relative_to(operator):
            found = f"{path.relative_to(operator).as_posix()}:{tb.tb_lineno}"
        elif path.is_relative_to(builtin):
            found = f"{path}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _inline_css(html: str) -> str:
    """Inline the CSS into style attributes once per edition.

    @media and :root rules cannot be inlined and stay in <style> (with
    !important, so they beat the inline styles); nothing is fetched, no
    URL is rewritten and cssutils' warnings about email-only properties
    (mso-*) are silenced.
    """
    try:
        return premailer.Premailer(
            html,
            base_url=None,
            disable_link_rewrites=True,
            strip_important=False,
            allow_network=False,
            allow_loading_external_files=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            disable_basic_attributes=["height"],
        ).transform()
    except Exception as exc:  # premailer raises cssutils, lxml and its own errors
        raise RenderError(
            f"inlining the CSS failed: {type(exc).__name__}: {exc}",
            where="edition.css",
            hint="check edition.css and the <style> block of edition.html.j2 for invalid CSS",
        ) from None


def _sample_edition() -> Edition:
    day = dt.date(2026, 1, 2)
    full = Article(
        headline="Sample headline",
        summary=("A first paragraph.", "A second paragraph."),
        url="https://example.com/article",
        source="example.com",
        published=day,
        origin="built-in sample",
        summary_html="<p>A first paragraph.</p>",
        image_url="https://example.com/image.png",
        image_alt="A sample image",
    )
    bare = Article(headline="Bare headline", summary=(), origin="built-in sample")
    return Edition(
        date=day, articles=(full, bare), subject="Sample subject", preheader="Sample preheader"
    )
