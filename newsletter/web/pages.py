"""HTML pages people see in a browser, rendered from the templates' web/ folder with autoescape.

Kept apart from the email templates: pages may use ordinary CSS and forms,
emails may not. The pages are the package's own; a web/ folder inside
NEWSLETTER_TEMPLATES_DIR overrides them file by file (`packaged.py`).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateError, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.config import Settings
from newsletter.packaged import template_loader

#: The templates the routes render: each must exist (built-in or the operator's).
PAGE_TEMPLATES = (
    "subscribe.html",
    "check_inbox.html",
    "confirm.html",
    "too_many.html",
    "unsubscribe.html",
    "unsubscribe_help.html",
    "bad_link.html",
    "archive.html",
    "archive_bar.html",
    "error.html",
    "editor/login.html",
    "editor/dashboard.html",
    "editor/edition.html",
    "editor/subscribers.html",
    "editor/message.html",
    "editor/confirm.html",
)


class Pages:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = Environment(
            loader=template_loader(settings.templates_dir, "web"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def broken(self) -> list[str]:
        """Every page template that does not load (missing, or bad syntax), for /healthz.

        Loading compiles a template and Jinja caches it, so this is cheap after the
        first call; a health check that says "ok" while every page answers 500 (a
        folder that lost a file) would send the load balancer traffic it cannot serve.
        """
        problems = []
        for name in sorted({*PAGE_TEMPLATES, *self.env.list_templates(extensions=["html"])}):
            try:
                self.env.get_template(name)
            except TemplateError as exc:  # TemplateNotFound and TemplateSyntaxError are ones
                problems.append(f"{name}: {type(exc).__name__}: {exc}")
        return problems

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page with the newsletter's name, the request and `csrf_token()` for its forms.

        `csrf_token` is a function the template calls inside a form: only a page
        that shows a form gets a token, so only such a page sets the form cookie
        (a public, cacheable page sets none).
        """
        from newsletter.web.security import csrf_token

        template = self.env.get_template(name)
        html = template.render(
            settings=self.settings,
            request=request,
            csrf_token=lambda: csrf_token(request),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)
