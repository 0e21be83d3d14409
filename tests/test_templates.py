"""Where templates come from: the package's own, or an operator's folder over them.

NEWSLETTER_TEMPLATES_DIR unset: the built-in templates, from any working
directory. Set: that folder first, the built-in templates for every file it
lacks, for the email (edition.*) and for the web pages (its web/ folder).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.models import Article, Edition
from newsletter.packaged import builtin_templates
from newsletter.render import check_templates, render_edition
from newsletter.store.migrate import upgrade
from newsletter.web import create_app

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "0123456789abcdef"


def make_settings(tmp_path: Path, **values: object) -> Settings:
    values = {
        "database_url": f"sqlite:///{tmp_path / 'site.db'}",
        "base_url": "https://news.example.org",
        "secret_key": "templates-test-secret-0123456789abcdef",
        **values,
    }
    return Settings(_env_file=None, **values)


def edition() -> Edition:
    day = dt.date(2026, 11, 25)
    article = Article(
        headline="Porto fits heat pumps to its trams depots",
        summary=("A first paragraph.",),
        url="https://example.com/porto",
        source="example.com",
        published=day,
        origin="test",
    )
    return Edition(date=day, articles=(article,), subject="Subject", preheader="Preheader")


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no templates/ in it, as an installed program meets it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_unset_means_the_built_in_templates_from_any_directory(tmp_path, elsewhere):
    settings = make_settings(tmp_path)
    assert settings.templates_dir is None
    built_in = render_edition(edition(), settings, slot_token=TOKEN)
    from_checkout = render_edition(
        edition(), make_settings(tmp_path, templates_dir=ROOT / "templates"), slot_token=TOKEN
    )
    assert built_in == from_checkout
    assert "Porto fits heat pumps" in built_in.html and "Porto fits heat pumps" in built_in.text
    check_templates(settings)


def test_the_packaged_templates_are_the_checkouts_own_files():
    # one real copy: newsletter/templates is the top-level templates/ folder
    assert builtin_templates().resolve() == (ROOT / "templates").resolve()


def test_an_operator_folder_overrides_one_file_and_keeps_the_rest(tmp_path, elsewhere):
    mine = tmp_path / "mine"
    mine.mkdir()
    css = (builtin_templates() / "edition.css").read_text(encoding="utf-8")
    restyled = css + "\n.masthead { letter-spacing: 7px; }\n"
    (mine / "edition.css").write_text(restyled, encoding="utf-8")
    built_in = render_edition(edition(), make_settings(tmp_path), slot_token=TOKEN)
    ours = render_edition(edition(), make_settings(tmp_path, templates_dir=mine), slot_token=TOKEN)
    assert "letter-spacing:7px" in ours.html.replace(" ", "")
    assert "letter-spacing:7px" not in built_in.html.replace(" ", "")
    assert ours.text == built_in.text  # edition.txt.j2 and edition.html.j2 come from the package


def test_an_operators_file_wins_over_the_built_in_one_of_the_same_name(tmp_path, elsewhere):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "edition.txt.j2").write_text("{{ edition.subject }} in plain text\n", encoding="utf-8")
    built_in = render_edition(edition(), make_settings(tmp_path), slot_token=TOKEN)
    ours = render_edition(edition(), make_settings(tmp_path, templates_dir=mine), slot_token=TOKEN)
    assert ours.text == "Subject in plain text\n"
    assert ours.html == built_in.html


def test_an_error_in_a_built_in_file_names_its_full_path(tmp_path, elsewhere):
    # the operator's edition.txt.j2 includes the built-in HTML template with an edition
    # that has no fields: the fault is in the built-in file, named by its full path
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "edition.txt.j2").write_text(
        '{% with edition = {} %}{% include "edition.html.j2" %}{% endwith %}\n',
        encoding="utf-8",
    )
    with pytest.raises(RenderError) as caught:
        render_edition(edition(), make_settings(tmp_path, templates_dir=mine), slot_token=TOKEN)
    where = caught.value.where or ""
    name, _, line = where.rpartition(":")
    assert name == str((builtin_templates() / "edition.html.j2").resolve()) and int(line) > 0


def test_a_templates_folder_that_does_not_exist_is_an_error(tmp_path, elsewhere):
    settings = make_settings(tmp_path, templates_dir=tmp_path / "no-such-folder")
    with pytest.raises(RenderError) as caught:
        render_edition(edition(), settings, slot_token=TOKEN)
    assert caught.value.where == "NEWSLETTER_TEMPLATES_DIR"
    assert "no-such-folder" in caught.value.message
    assert "newsletter init --templates" in (caught.value.hint or "")


def test_web_pages_come_from_the_package_or_the_operators_web_folder(tmp_path, elsewhere):
    upgrade(make_settings(tmp_path).database_url)  # the site's database, as `init` makes it
    with TestClient(create_app(make_settings(tmp_path)), base_url="https://testserver") as client:
        for path in ("/subscribe", "/archive", "/editor/login"):
            assert client.get(path).status_code == 200, path
        built_in = client.get("/archive").text

    mine = tmp_path / "mine"
    (mine / "web").mkdir(parents=True)
    subscribe = (builtin_templates() / "web" / "subscribe.html").read_text(encoding="utf-8")
    (mine / "web" / "subscribe.html").write_text(
        subscribe.replace("{% block content %}", "{% block content %}<p>Our own words.</p>", 1),
        encoding="utf-8",
    )
    settings = make_settings(tmp_path, templates_dir=mine)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        page = client.get("/subscribe")
        assert page.status_code == 200 and "Our own words." in page.text
        assert client.get("/archive").text == built_in  # not overridden: the built-in page
        assert client.get("/editor/login").status_code == 200
