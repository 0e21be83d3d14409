"""Every error the newsletter raises on purpose, under one base.

    NewsletterError            where + what + how to fix, printed as one block
    ├── ConfigError            a setting has a value we cannot use
    ├── SourceError            an article file or feed could not be read
    │   └── ArticleParseError  one file is not an article (the edition goes on without it)
    ├── RenderError            a template failed (names the template and line)
    ├── InputError             a user-supplied file or value is wrong (CSV row, address)
    ├── StoreError             the database cannot be opened, read or written (disk full,
    │   │                      read-only, not a database, a table missing)
    │   └── StoreUnavailable   ... for now: locked by another process, server restarting or
    │                          unreachable; a send retries it within STORE_RETRY_WINDOW
    ├── DeliveryError          the SMTP session as a whole failed (auth, refused, sender rejected)
    └── LockedError            another process holds what this one needs (a second scheduler)

Third-party exceptions are translated into these at the module that calls the
library, so the CLI has exactly one thing to catch and print.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base error: a message a person can act on.

    `where` names the file, line, field or recipient; `hint` says what to do.
    """

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(NewsletterError):
    """A setting is missing or has a value outside what is allowed."""


class SourceError(NewsletterError):
    """The articles of a date could not be read at all (missing directory, feed down)."""


class ArticleParseError(SourceError):
    """One article file could not be parsed; it is reported and skipped."""


class RenderError(NewsletterError):
    """A template could not be loaded or rendered."""


class InputError(NewsletterError):
    """User-supplied input (a CSV row, an address, a date) is not valid."""


class StoreError(NewsletterError):
    """The database could not be opened, created, read or written; trying again will not help.

    Raised by the store for every database failure (see `store/errors.py`, the one place
    driver exceptions are translated), with `where` naming the database.
    """


class StoreUnavailable(StoreError):
    """The database cannot answer now but may soon: another process holds its lock, or the
    server is restarting or unreachable. A send retries it with backoff for up to
    STORE_RETRY_WINDOW seconds, then stops with this error."""


class DeliveryError(NewsletterError):
    """The SMTP session as a whole failed; queued deliveries stay queued."""


class MailboxError(NewsletterError):
    """A mailbox to read (the bounce address's IMAP server) could not be reached or used."""


class LockedError(NewsletterError):
    """Another process holds a lock this one needs (e.g. a second scheduler on one database)."""
