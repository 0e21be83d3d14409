"""`newsletter logout-everywhere`: end every editor session from the command line.

For when the editor cannot log in to press the dashboard's button (a lost
laptop, a password that leaked): the rows go, so every session cookie, on
every browser, opens nothing from now on.
"""

from __future__ import annotations

import typer

from newsletter.cli.context import console, engine_of, settings_of
from newsletter.store import sessions as session_store


def logout_everywhere(ctx: typer.Context) -> None:
    """End every editor session on every browser (the web editor asks for the password again).

    Example: newsletter logout-everywhere
    """
    engine = engine_of(settings_of(ctx))
    try:
        ended = session_store.end_all(engine)
    finally:
        engine.dispose()
    console.print(f"ended {ended} editor session{'' if ended == 1 else 's'}")
