"""HTML pages people see in a browser, rendered from the templates' web/ folder with autoescape.

Kept apart from the email templates: pages may use ordinary CSS and forms,
emails may not. The pages are the package's own; a web/ folder inside
NEWSLETTER_TEMPLATES_DIR overrides them file by file (`packaged.py`).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.config import Settings
from newsletter.packaged import template_loader


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

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page with the newsletter's name, the request and (for forms) the CSRF token."""
        from newsletter.web.security import csrf_token

        template = self.env.get_template(name)
        html = template.render(
            settings=self.settings,
            request=request,
            csrf_token=csrf_token(request) if "session" in request.scope else "",
            **context,
        )
        return HTMLResponse(html, status_code=status_code)
