"""`newsletter init`: a .env with a fresh secret, and the database."""

from __future__ import annotations

import secrets
from pathlib import Path

import typer

from newsletter.cli.context import console, settings_of
from newsletter.store.migrate import upgrade


def init(ctx: typer.Context) -> None:
    """Create the database, and .env from .env.example if there is none.

    Example: newsletter init
    """
    env, example = Path(".env"), Path(".env.example")
    if not env.exists() and example.exists():
        text = example.read_text(encoding="utf-8")
        text = text.replace(
            "NEWSLETTER_SECRET_KEY=change-me-to-a-long-random-string",
            f"NEWSLETTER_SECRET_KEY={secrets.token_urlsafe(32)}",
        )
        env.write_text(text, encoding="utf-8")
        console.print(f"wrote {env} from {example} (with a new random secret key)")
        ctx.obj = None
    settings = settings_of(ctx)
    done = upgrade(settings.database_url)
    console.print(f"database ready: {done.database} ({done.describe()})")
