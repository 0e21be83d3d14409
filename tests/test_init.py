"""`newsletter init [DIR]`: a working site folder from nothing, never overwriting without --force.

Each test runs the command as a user does (a subprocess) in an empty folder: no
.env.example, no templates/, nothing of the checkout's around it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from conftest import Cli

from newsletter.packaged import builtin_templates, sample_site

DAY = "2026-11-25"


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


@pytest.fixture
def cli() -> Cli:
    """No NEWSLETTER_* from the developer's environment: only what init writes counts."""
    env = Cli({k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")})
    env["COLUMNS"] = "200"
    return env


def secret_of(env_file: Path) -> str:
    found = re.search(r"^NEWSLETTER_SECRET_KEY=(.*)$", env_file.read_text("utf-8"), re.M)
    assert found, f"no NEWSLETTER_SECRET_KEY line in {env_file}"
    return found.group(1)


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.mark.sqlite_only  # the default database: a SQLite file inside the site
def test_init_dir_makes_a_site_that_works_from_there(cli, empty):
    result = cli.run("init", "site", cwd=empty)
    site = empty / "site"
    lines = result.stdout.splitlines()
    assert lines[0].startswith("wrote site/.env (a new random secret key")
    assert any(line.startswith("wrote site/articles/ (sample articles") for line in lines)
    assert "wrote site/subscribers/example.csv (the list format" in result.stdout
    assert "database ready: sqlite:///site/var/newsletter.db" in result.stdout

    env_file = site / ".env"
    secret = secret_of(env_file)
    assert len(secret) >= 43 and "change-me" not in secret
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # it holds the secret
    assert (site / "var" / "newsletter.db").is_file()  # relative to the site, not the cwd
    assert not (empty / "var").exists()
    assert files_under(site / "articles") == files_under(sample_site() / "articles")
    assert (site / "subscribers" / "example.csv").read_bytes() == (
        sample_site() / "subscribers" / "example.csv"
    ).read_bytes()

    # every path in .env works from the site: articles, templates (built in), database
    cli.run("subscribers", "import", "subscribers/example.csv", cwd=site)
    preview = cli.run("preview", "--date", DAY, cwd=site)
    assert "subject:" in preview.stdout
    assert (site / "var" / "preview" / "edition.html").is_file()

    other = empty / "other"
    cli.run("init", str(other), cwd=empty)
    assert secret_of(other / ".env") != secret  # fresh for every site


@pytest.mark.sqlite_only
def test_init_without_dir_writes_env_here_with_no_env_example_around(cli, empty):
    result = cli.run("init", cwd=empty)
    assert result.stdout.startswith("wrote .env (a new random secret key")
    assert "change-me" not in secret_of(empty / ".env")
    assert (empty / "var" / "newsletter.db").is_file()
    assert "next:" not in result.stdout  # already there


def test_init_keeps_what_exists_unless_forced(cli, empty, new_database_url):
    cli["NEWSLETTER_DATABASE_URL"] = new_database_url("site")
    site = empty / "site"
    (site / "articles" / "2030-01-01").mkdir(parents=True)
    (site / "articles" / "2030-01-01" / "mine.txt").write_text("my own\n", encoding="utf-8")
    (site / "subscribers").mkdir()
    (site / "subscribers" / "example.csv").write_text("email\nme@example.org\n", "utf-8")
    (site / ".env").write_text("NEWSLETTER_SECRET_KEY=my-own-secret\n", encoding="utf-8")

    kept = cli.run("init", "site", cwd=empty)
    assert "kept site/.env (use --force to replace it)" in kept.stdout
    assert "kept site/articles (it has files; no samples added)" in kept.stdout
    assert "kept site/subscribers/example.csv (use --force to replace it)" in kept.stdout
    assert "wrote" not in kept.stdout
    assert secret_of(site / ".env") == "my-own-secret"
    assert sorted(files_under(site / "articles")) == ["2030-01-01/mine.txt"]
    assert (site / "subscribers" / "example.csv").read_text("utf-8") == "email\nme@example.org\n"

    forced = cli.run("init", "site", "--force", cwd=empty)
    assert "replaced site/.env (a new random secret key: links in emails" in forced.stdout
    assert "replaced site/subscribers/example.csv" in forced.stdout
    assert secret_of(site / ".env") not in ("my-own-secret", "")
    assert (site / "subscribers" / "example.csv").read_bytes() == (
        sample_site() / "subscribers" / "example.csv"
    ).read_bytes()
    assert sorted(files_under(site / "articles")) == ["2030-01-01/mine.txt"]  # never mixed in


def test_init_templates_copies_the_built_in_ones_and_uses_them(cli, empty, new_database_url):
    cli["NEWSLETTER_DATABASE_URL"] = new_database_url("site")
    result = cli.run("init", "site", "--templates", cwd=empty)
    site = empty / "site"
    assert re.search(r"^wrote site/templates/ \(\d+ files", result.stdout, re.M)
    assert files_under(site / "templates") == files_under(builtin_templates())
    assert re.search(r"^NEWSLETTER_TEMPLATES_DIR=templates$", (site / ".env").read_text(), re.M)

    text_template = site / "templates" / "edition.txt.j2"
    text_template.write_text(
        "Edited by hand. " + text_template.read_text(encoding="utf-8"), encoding="utf-8"
    )
    cli.run("preview", "--date", DAY, cwd=site)
    assert "Edited by hand." in (site / "var" / "preview" / "edition.txt").read_text("utf-8")

    again = cli.run("init", "site", "--templates", cwd=empty)
    assert "kept site/templates/edition.txt.j2 (use --force to replace it)" in again.stdout
    assert "Edited by hand." in text_template.read_text(encoding="utf-8")


def test_init_templates_in_a_site_whose_env_is_kept_says_what_to_set(cli, empty, new_database_url):
    cli["NEWSLETTER_DATABASE_URL"] = new_database_url("site")
    (empty / ".env").write_text("NEWSLETTER_SECRET_KEY=my-own-secret\n", encoding="utf-8")
    result = cli.run("init", "--templates", cwd=empty)
    assert "kept .env (use --force to replace it)" in result.stdout
    assert "set NEWSLETTER_TEMPLATES_DIR=templates in .env to use the copy" in result.stdout
    assert (empty / ".env").read_text("utf-8") == "NEWSLETTER_SECRET_KEY=my-own-secret\n"


def test_init_on_a_file_is_one_line(cli, empty):
    (empty / "site").write_text("not a folder\n", encoding="utf-8")
    result = cli.run("init", "site", cwd=empty, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: site: exists and is not a folder"
