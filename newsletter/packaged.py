"""The files that ship inside the package, and where templates are looked up.

    newsletter/templates/  the email templates (edition.html.j2, edition.txt.j2,
                           edition.css) and the web pages (web/)
    newsletter/sample/     a sample site: .env.example, articles/ (three days) and
                           subscribers/example.csv; `init` copies it, `demo` runs on it

They are read through importlib.resources, so an installed wheel finds them
from whatever directory it runs in. In the checkout both are symlinks to the
top-level templates/, .env.example, articles/ and subscribers/example.csv: one
real copy, whose content setuptools copies into the wheel (tests/test_wheel.py
checks it byte for byte).

An operator's NEWSLETTER_TEMPLATES_DIR overrides the built-in templates whole
or file by file: `template_loader` looks in that folder first, then in the
package's, so a folder holding only edition.css restyles the email and keeps
everything else as built.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import jinja2

from newsletter.errors import RenderError


def builtin_templates() -> Path:
    """The package's own templates folder (web pages under web/)."""
    return _package_folder("templates")


def sample_site() -> Path:
    """The package's sample site: .env.example, articles/, subscribers/example.csv."""
    return _package_folder("sample")


def template_loader(templates_dir: Path | None, folder: str = "") -> jinja2.BaseLoader:
    """Jinja's loader for `folder` ("" for the email, "web" for the pages).

    With no operator folder, the built-in templates; with one, that folder first
    and the built-in templates for every file it does not have. A folder that
    does not exist is an error rather than a silent fall-back, so a mistyped
    setting is noticed before anything is sent with the wrong look.
    """
    builtin = jinja2.FileSystemLoader(builtin_templates() / folder)
    if templates_dir is None:
        return builtin
    if not templates_dir.is_dir():
        raise RenderError(
            f"the templates folder {templates_dir} does not exist",
            where="NEWSLETTER_TEMPLATES_DIR",
            hint="leave it empty for the built-in templates, or run "
            "`newsletter init --templates` for a copy to edit",
        )
    return jinja2.ChoiceLoader([jinja2.FileSystemLoader(templates_dir / folder), builtin])


def _package_folder(name: str) -> Path:
    found = files("newsletter") / name
    if not isinstance(found, Path):  # only a zipped install (never pip's) lacks real paths
        raise RenderError(
            f"the package's {name}/ folder is not on the file system ({found})",
            where="newsletter",
            hint="install the newsletter package with pip, which unpacks it",
        )
    return found
