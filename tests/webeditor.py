"""Helpers for the editor tests: settings with an editor password, and an HTTP client
that logs in and carries the session's CSRF token like the editor's browser does."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from newsletter.config import Settings

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_FLASH = re.compile(r'<p class="flash (\w+)"[^>]*>(.*?)</p>', re.S)


def editor_settings(settings: Settings, **changes: object) -> Settings:
    """The test settings with an editor password and a plain-http base URL.

    Over https the session cookie is `Secure`, which a client talking plain
    HTTP to 127.0.0.1 rightly never sends back.
    """
    values: dict[str, object] = {
        "editor_password": SecretStr(PASSWORD),
        "base_url": "http://news.example.org",
    }
    values.update(changes)
    return settings.model_copy(update=values)


class EditorClient:
    """An httpx client on the live site that follows no redirect unless asked."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def csrf(self) -> str:
        """The session's CSRF token, read from a page as a browser would see it."""
        page = self.http.get("/editor/subscribers")
        if page.status_code != 200:  # not logged in: the login form carries one too
            page = self.http.get("/editor/login")
        found = _CSRF.search(page.text)
        assert found, page.text[:2000]
        return found.group(1)

    def login(self, password: str = PASSWORD, next_path: str | None = None) -> httpx.Response:
        token = _CSRF.search(self.http.get("/editor/login").text)
        assert token
        data = {"csrf_token": token.group(1), "password": password}
        if next_path is not None:
            data["next"] = next_path
        return self.http.post("/editor/login", data=data)

    def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.csrf()
        return self.http.post(path, data=form)

    def act(self, path: str, **data: str) -> httpx.Response:
        """POST a confirmed action and follow its redirect to the page that reports it."""
        response = self.post(path, {"confirm": "yes", **data})
        assert response.status_code == 303, (response.status_code, response.text[:2000])
        return self.http.get(response.headers["location"])


def flashes(response: httpx.Response) -> list[tuple[str, str]]:
    """The messages a page shows after an action: (kind, text)."""
    return [(kind, html.unescape(text).strip()) for kind, text in _FLASH.findall(response.text)]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
