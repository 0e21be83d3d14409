"""`newsletter demo` from a folder that is not the checkout: packaged samples, its own secret."""

from __future__ import annotations

import os
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from conftest import Cli

from newsletter.errors import InputError
from newsletter.tokens import Purpose, Signer

# the built-in default of SECRET_KEY before issue 10: the demo must never sign with it
OLD_DEFAULT_SECRET = "change-me-to-a-long-random-string"


@pytest.mark.sqlite_only  # the demo's database is a SQLite file of its own
def test_demo_runs_from_any_folder_on_packaged_samples_with_its_own_secret(tmp_path: Path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    # a site's .env with a relay that does not exist: the demo must not read it
    (work / ".env").write_text("NEWSLETTER_SMTP_HOST=relay.invalid\n", encoding="utf-8")
    env = Cli({k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")})
    result = env.run("demo", "--workdir", "demo", cwd=work)
    assert "imported 10 subscribers from the example list" in result.stdout
    assert "sent 10, skipped 0, failed 0" in result.stdout
    assert "sending again delivered 0" in result.stdout

    captured = sorted((work / "demo" / "maildir" / "new").iterdir())
    assert len(captured) == 10
    message = message_from_bytes(captured[0].read_bytes(), policy=policy.default)
    link = re.search(r"/unsubscribe/([^>\s]+)>", str(message["List-Unsubscribe"]))
    assert link, message["List-Unsubscribe"]
    with pytest.raises(InputError, match="not valid"):
        Signer(OLD_DEFAULT_SECRET).read(Purpose.UNSUBSCRIBE, link.group(1), max_age=3600)
    assert (work / "demo" / "preview" / "edition.html").is_file()
