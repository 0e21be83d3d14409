"""A doctor check's shape, and the guard that keeps one broken check from stopping the rest."""

from __future__ import annotations

from collections.abc import Callable

from newsletter.config import Finding, Settings, Severity
from newsletter.errors import NewsletterError
from newsletter.hygiene import one_line

Check = Callable[[Settings], list[Finding]]


def guarded(name: str, check: Check, settings: Settings) -> list[Finding]:
    """The check's findings; anything it raises, foreseen or not, as one error finding."""
    try:
        return check(settings)
    except NewsletterError as exc:
        return [Finding(Severity.ERROR, exc.where or name, exc.message, exc.hint or "")]
    except Exception as exc:  # a check must never stop the others: report it and go on
        return [
            Finding(
                Severity.ERROR,
                name,
                f"the check itself failed: {type(exc).__name__}: {one_line(str(exc))}",
                "please report it with this line",
            )
        ]
