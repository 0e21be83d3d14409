"""`pytest --db=postgresql` really points the whole suite at PostgreSQL."""

from __future__ import annotations

from newsletter.store.engine import open_engine


def test_the_suite_runs_on_the_database_it_was_asked_for(settings, cli_env, db_kind):
    for url in (settings.database_url, cli_env["NEWSLETTER_DATABASE_URL"]):
        engine = open_engine(url)
        assert engine.dialect.name == db_kind, url
        engine.dispose()
    assert settings.database_url != cli_env["NEWSLETTER_DATABASE_URL"]
