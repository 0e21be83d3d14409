"""`newsletter init [DIR]`: a working site folder, the way `mkdocs new` makes one.

    DIR/.env                     the packaged .env.example with a fresh SECRET_KEY
    DIR/articles/                the sample days (into a new or empty folder only)
    DIR/subscribers/example.csv  the list format, to import and try
    DIR/templates/               with --templates: the built-in templates to edit
    the database                 NEWSLETTER_DATABASE_URL, a relative SQLite path
                                 taken from DIR

Every path in the .env is relative, so every command works from DIR. Nothing
that exists is overwritten without --force: a site folder's .env holds the
only copy of its secret, and changing the secret breaks every link already sent.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from newsletter.cli.context import console
from newsletter.config import load_settings
from newsletter.errors import InputError
from newsletter.logs import configure_logging
from newsletter.packaged import builtin_templates, sample_site

KEEP_HINT = "use --force to replace it"


def init(
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="The site folder (made if missing); default: here."),
    ] = Path("."),
    templates: Annotated[
        bool,
        typer.Option(
            "--templates",
            help="Also copy the built-in templates into DIR/templates to customise, "
            "and point NEWSLETTER_TEMPLATES_DIR at them.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace files that exist (.env included).")
    ] = False,
) -> None:
    """Make a site folder: .env with a fresh secret, articles/, subscribers/, the database.

    Example: newsletter init mysite && cd mysite && $EDITOR .env
    """
    if directory.exists() and not directory.is_dir():
        raise InputError("exists and is not a folder", where=str(directory))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_env(directory / ".env", force=force, templates=templates)
        _write_articles(directory / "articles")
        _write_file(
            sample_site() / "subscribers" / "example.csv",
            directory / "subscribers" / "example.csv",
            force=force,
            note="the list format; `newsletter subscribers import` it to try",
        )
        if templates:
            _write_templates(directory / "templates", force=force)
    except OSError as exc:  # a read-only folder, a file where a folder should be, a full disk
        raise InputError(
            f"cannot write: {exc.strerror or exc}",
            where=str(exc.filename or directory),
            hint="choose a folder you can write to",
        ) from None

    settings = load_settings(_env_file=directory / ".env")
    configure_logging(settings.log_level, settings.log_format)
    url = site_database_url(settings.database_url, directory)
    from newsletter.store.migrate import upgrade  # Alembic: only when asked

    done = upgrade(url)
    _say(f"database ready: {done.database} ({done.describe()})")
    if directory != Path("."):
        _say(f"next: cd {directory}, then edit .env")


def site_database_url(url: str, directory: Path) -> str:
    """`url` with a relative SQLite path taken from `directory`, as it is when run from there."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # not a URL at all: open_engine says so in one line
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or parsed.query.get("uri") == "true"
        or Path(database).is_absolute()
    ):
        return url
    return parsed.set(database=str(directory / database)).render_as_string(hide_password=False)


def _write_env(path: Path, *, force: bool, templates: bool) -> None:
    existed = path.exists()
    if existed and not force:
        _say(f"kept {path} ({KEEP_HINT})")
        if templates and not re.search(r"^NEWSLETTER_TEMPLATES_DIR=\S", _read(path), re.M):
            _say(f"  set NEWSLETTER_TEMPLATES_DIR=templates in {path} to use the copy")
        return
    text = (sample_site() / ".env.example").read_text(encoding="utf-8")
    text = _with_setting(text, "NEWSLETTER_SECRET_KEY", secrets.token_urlsafe(32))
    if templates:
        text = _with_setting(text, "NEWSLETTER_TEMPLATES_DIR", "templates")
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)  # the secret key and, once filled in, the relay's password
    if existed:  # --force: say what a new secret costs
        _say(
            f"replaced {path} (a new random secret key: links in emails already sent stop working)"
        )
    else:
        _say(
            f"wrote {path} (a new random secret key; set your relay, sender, postal address "
            "and BASE_URL in it)"
        )


def _with_setting(text: str, key: str, value: str) -> str:
    """`text` (a .env) with `key=value` in place of the key's line, or added at the end."""
    line = f"{key}={value}"
    pattern = re.compile(rf"^{re.escape(key)}=.*$", re.M)
    if pattern.search(text):
        return pattern.sub(lambda _match: line, text, count=1)
    return text.rstrip("\n") + f"\n{line}\n"


def _write_articles(folder: Path) -> None:
    """The sample days, only into a new or empty folder: never mixed into real articles."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        _say(f"kept {folder} (it has files; no samples added)")
        return
    source = sample_site() / "articles"
    shutil.copytree(source, folder, dirs_exist_ok=True)
    days = sorted(day.name for day in source.iterdir() if day.is_dir())
    _say(
        f"wrote {folder}/ (sample articles for {days[0]} to {days[-1]}: replace them with "
        "yours, one folder per day)"
    )


def _write_templates(folder: Path, *, force: bool) -> None:
    source = builtin_templates()
    written = 0
    for original in sorted(p for p in source.rglob("*") if p.is_file()):
        target = folder / original.relative_to(source)
        if target.exists() and not force:
            _say(f"kept {target} ({KEEP_HINT})")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, target)
        written += 1
    if written:
        _say(
            f"wrote {folder}/ ({written} files: edition.html.j2, edition.txt.j2, edition.css "
            "and web/; edit any, delete the ones you keep as built)"
        )


def _write_file(source: Path, target: Path, *, force: bool, note: str) -> None:
    existed = target.exists()
    if existed and not force:
        _say(f"kept {target} ({KEEP_HINT})")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    _say(f"{'replaced' if existed else 'wrote'} {target} ({note})")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None


def _say(line: str) -> None:
    """One line per thing done, never wrapped, so it reads (and greps) as one line."""
    console.print(line, highlight=False, soft_wrap=True)
