"""Subscribers: CSV import/export, status changes, and the store queries under them.

Every test uses a fresh database from `new_database_url` (a SQLite file, or with
--db=postgresql a database on the session's cluster). Reading the files
themselves is tested in test_subscriber_csv.py.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, text

from newsletter.errors import InputError, StoreError
from newsletter.models import SubscriberStatus
from newsletter.store import subscribers as store
from newsletter.store.engine import open_engine, utcnow
from newsletter.store.imports import ImportRow, upsert_imported
from newsletter.store.schema import deliveries, editions, subscribers
from newsletter.subscribers import (
    ImportInterruptedError,
    add_subscriber,
    export_csv,
    import_csv,
    remove_subscriber,
    unsubscribe,
)

DATA = Path(__file__).parent / "data" / "subscribers"
EXAMPLE = Path(__file__).parent.parent / "subscribers" / "example.csv"
ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING
UNSUBSCRIBED, BOUNCED = SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED


@pytest.fixture
def engine(new_database_url) -> Iterator[Engine]:
    engine = open_engine(new_database_url("news"))
    yield engine
    engine.dispose()


# A real database fault for one address: (statements creating it, statement dropping it).
FAULT_TRIGGER = {
    "sqlite": (
        [
            "CREATE TRIGGER boom BEFORE INSERT ON subscribers "
            "WHEN NEW.email_key = 'user25@example.com' "
            "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        ],
        "DROP TRIGGER boom",
    ),
    "postgresql": (
        [
            "CREATE OR REPLACE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
            "IF NEW.email_key = 'user25@example.com' THEN RAISE EXCEPTION 'injected fault'; "
            "END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER boom BEFORE INSERT ON subscribers FOR EACH ROW EXECUTE FUNCTION boom()",
        ],
        "DROP TRIGGER boom ON subscribers",
    ),
}


def write_csv(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


def status_of(engine: Engine, email: str) -> SubscriberStatus | None:
    found = store.get_subscriber(engine, email)
    return found.status if found else None


# Import


def test_import_report_counts(engine: Engine, tmp_path: Path) -> None:
    store.insert_subscriber(engine, "old@example.com", "Old")
    store.insert_subscriber(engine, "rename@example.com", "Before")
    store.insert_subscriber(engine, "wait@example.com", status=PENDING)
    store.insert_subscriber(engine, "left@example.com", status=UNSUBSCRIBED)
    store.insert_subscriber(engine, "gone@example.com", status=BOUNCED)
    path = write_csv(
        tmp_path / "list.csv",
        "email,name\nnew@example.com,New\nold@example.com,\nrename@example.com,After\n"
        "wait@example.com,Waiting\nLEFT@example.com,Left\ngone@example.com,Gone\nnope,No\n",
    )
    report = import_csv(engine, path, source="crm")
    assert (report.added, report.updated, report.unchanged) == (1, 2, 1)
    assert (report.kept_unsubscribed, report.kept_bounced, report.suppressed) == (1, 1, 0)
    assert [line for line, _ in report.invalid] == [8] and "'nope'" in report.invalid[0][1]
    assert store.get_subscriber(engine, "new@example.com").source == "crm"
    assert store.get_subscriber(engine, "rename@example.com").name == "After"
    assert store.get_subscriber(engine, "old@example.com").name == "Old"
    assert status_of(engine, "wait@example.com") is ACTIVE
    assert store.get_subscriber(engine, "left@example.com").name == ""
    assert "1 added" in report.summary() and "1 invalid" in report.summary()


ONE_OF_EACH = (
    "email,name,status\n"
    "new@example.com,New,\n"  # added
    "rename@example.com,After,\n"  # updated
    "same@example.com,,\n"  # unchanged
    "left@example.com,,\n"  # kept unsubscribed
    "gone@example.com,,\n"  # kept bounced
    "optout@example.com,,unsubscribed\n"  # unsubscribed by the file's status
    "NEW@example.com,,\n"  # repeated
    "nope,,\n"  # invalid
    "\n"  # a blank line is not a row
)


def test_the_import_summary_counts_every_row_once(cli_env, tmp_path: Path) -> None:
    """Issue 10: the summary dropped rows (the file's own unsubscribes, repeats); now each
    row of the file is in exactly one count, and the counts add up to the rows."""
    engine = open_engine(cli_env["NEWSLETTER_DATABASE_URL"])
    store.insert_subscriber(engine, "rename@example.com", "Before")
    store.insert_subscriber(engine, "same@example.com")
    store.insert_subscriber(engine, "left@example.com", status=UNSUBSCRIBED)
    store.insert_subscriber(engine, "gone@example.com", status=BOUNCED)
    path = write_csv(tmp_path / "each.csv", ONE_OF_EACH)
    rows = 8  # the lines after the header, but the blank one

    report = import_csv(engine, path)
    assert report.rows == rows
    assert [number for _, number in report.counts()] == [1] * rows  # one of each kind
    engine.dispose()

    printed = cli_env.run("subscribers", "import", str(path)).stdout  # again: all known now
    line = " ".join(printed.split()).split(f"{path.name}: ", 1)[1]
    counts = {label: int(n) for n, label in re.findall(r"(\d+) ([a-z][a-z' ]*[a-z])", line)}
    assert counts.pop("rows") == rows
    assert sum(counts.values()) == rows, line
    assert counts == {
        "unchanged": 3,  # new, rename and same
        "kept unsubscribed": 2,  # left, and optout since the first import
        "kept bounced": 1,
        "repeated": 1,
        "invalid": 1,
    }, line


def test_valid_rows_import_even_when_others_are_invalid(engine: Engine) -> None:
    report = import_csv(engine, DATA / "invalid.csv")
    assert report.added == 4
    assert [line for line, _ in report.invalid] == [5, 7, 9]
    assert store.count_by_status(engine)[ACTIVE] == 4
    assert store.get_subscriber(engine, "good1@example.com").source == "import:invalid.csv"


def test_reimport_after_unsubscribe_keeps_the_address_unsubscribed(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "l.csv", "email,name\nann@example.com,Ann\nbob@example.com,Bob\n")
    import_csv(engine, path)
    assert unsubscribe(engine, "ANN@example.com") is True
    before = store.get_subscriber(engine, "ann@example.com")
    report = import_csv(engine, path)
    assert (report.kept_unsubscribed, report.unchanged, report.added) == (1, 1, 0)
    after = store.get_subscriber(engine, "ann@example.com")
    assert after.status is UNSUBSCRIBED
    assert after.updated_at == before.updated_at


def test_reimport_after_a_bounce_keeps_the_address_bounced(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "l.csv", "email,name,status\nann@example.com,Ann,active\n")
    import_csv(engine, path)
    assert store.set_status(engine, "ann@example.com", BOUNCED) is True
    report = import_csv(engine, path)
    assert report.kept_bounced == 1
    assert status_of(engine, "ann@example.com") is BOUNCED


def test_status_column_suppresses_new_and_active_addresses_but_never_reactivates(
    engine: Engine, tmp_path: Path
) -> None:
    store.insert_subscriber(engine, "active@example.com")
    store.insert_subscriber(engine, "bounced@example.com", status=BOUNCED)
    path = write_csv(
        tmp_path / "s.csv",
        "email,status\nnew@example.com,unsubscribed\nactive@example.com,bounced\n"
        "bounced@example.com,unsubscribed\n",
    )
    report = import_csv(engine, path)
    assert (report.suppressed, report.kept_bounced, report.added) == (2, 1, 0)
    assert status_of(engine, "new@example.com") is UNSUBSCRIBED
    assert status_of(engine, "active@example.com") is BOUNCED
    assert status_of(engine, "bounced@example.com") is BOUNCED


def test_addresses_are_unique_whatever_their_case(engine: Engine, tmp_path: Path) -> None:
    first = add_subscriber(engine, "Ann@Example.com", "Ann")
    again = add_subscriber(engine, "ann@example.com")
    assert again.id == first.id and again.email == "Ann@example.com" and again.name == "Ann"
    assert store.insert_subscriber(engine, "ANN@EXAMPLE.COM") is None
    report = import_csv(engine, write_csv(tmp_path / "a.csv", "email\nann@EXAMPLE.com\n"))
    assert report.unchanged == 1
    assert sum(store.count_by_status(engine).values()) == 1
    assert store.get_subscriber(engine, " ANN@example.COM ").id == first.id


def test_a_database_failure_mid_import_keeps_earlier_batches_and_says_so(
    engine: Engine, tmp_path: Path
) -> None:
    lines = [f"user{n:02d}@example.com,User {n}" for n in range(30)]
    path = write_csv(tmp_path / "l.csv", "email,name\n" + "\n".join(lines) + "\n")
    create, drop = FAULT_TRIGGER[engine.dialect.name]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    with pytest.raises(ImportInterruptedError) as caught:
        import_csv(engine, path, batch_size=10)
    assert isinstance(caught.value, StoreError)
    assert caught.value.rows_saved == 20 and caught.value.report.added == 20
    assert "20 of 30 addresses were saved" in str(caught.value)
    assert "line 22" in str(caught.value) and "injected fault" in str(caught.value)
    assert store.count_by_status(engine)[ACTIVE] == 20  # the failed batch left nothing behind
    with engine.begin() as conn:
        conn.execute(text(drop))
    report = import_csv(engine, path, batch_size=10)
    assert (report.added, report.unchanged) == (10, 20)


def test_a_hundred_thousand_rows_import_with_correct_counts(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        for n in range(100_000):
            writer.writerow([f"reader{n}@example.com", f"Reader {n}"])
        writer.writerow(["Reader7@Example.com", "Dup"])  # a duplicate, merged
        writer.writerow(["broken@", "Bad"])
    store.insert_subscriber(engine, "reader5@example.com", status=UNSUBSCRIBED)
    report = import_csv(engine, path)
    assert (report.added, report.kept_unsubscribed, report.updated) == (99_999, 1, 0)
    assert report.invalid[0][0] == 100_003
    counts = store.count_by_status(engine)
    assert (counts[ACTIVE], counts[UNSUBSCRIBED]) == (99_999, 1)
    assert store.get_subscriber(engine, "reader7@example.com").name == "Reader 7"


# Export


def test_an_imported_row_is_stored_exactly_as_a_single_add_stores_it(engine: Engine) -> None:
    """The import writes at the driver's level; every column must read back as the ORM's add."""
    store.insert_subscriber(engine, "one@example.com", "Ann", source="import:x.csv")
    upsert_imported(
        engine,
        [ImportRow("Two@Example.com", "Bo"), ImportRow("u@example.com", "", UNSUBSCRIBED)],
        "import:x.csv",
    )
    with engine.connect() as conn:
        rows = {row.email_key: row for row in conn.execute(select(subscribers))}
    one, two, gone = rows["one@example.com"], rows["two@example.com"], rows["u@example.com"]
    assert (two.email, two.name, two.status, two.source) == (
        "Two@Example.com",
        "Bo",
        "active",
        "import:x.csv",
    )
    for column in ("created_at", "updated_at", "confirmed_at"):
        assert type(getattr(two, column)) is type(getattr(one, column)) is type(utcnow())
        assert abs((getattr(two, column) - getattr(one, column)).total_seconds()) < 60
    assert two.created_at == two.updated_at == two.confirmed_at and two.unsubscribed_at is None
    assert two.bounce_count == 0 and gone.confirmed_at is None
    assert gone.status == "unsubscribed" and gone.unsubscribed_at == gone.created_at
    assert store.get_subscriber(engine, "TWO@example.com").created_at == two.created_at


def test_an_address_added_meanwhile_is_merged_not_inserted_twice(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the batch's lookup and its insert another process may add an address: the insert
    skips it (ON CONFLICT) and the merge counts it, whatever the chunking of the insert."""
    from newsletter.store import imports

    monkeypatch.setattr(imports, "_INSERT_ROWS", 7)
    original = imports._select_by_keys
    calls = []

    def lookup_then_race(conn, keys):  # noqa: ANN001, ANN202
        found = original(conn, keys)
        if not calls:  # the first lookup: another sender adds two addresses right after it
            conn.execute(
                insert(subscribers),
                [
                    store.new_row(a, "", status, "web", utcnow())
                    for a, status in (("r3@example.com", ACTIVE), ("r20@example.com", UNSUBSCRIBED))
                ],
            )
        calls.append(keys)
        return found

    monkeypatch.setattr(imports, "_select_by_keys", lookup_then_race)
    rows = [ImportRow(f"r{n}@example.com", f"R {n}") for n in range(30)]
    counts = upsert_imported(engine, rows, "import:r.csv")
    assert (counts.added, counts.updated, counts.kept_unsubscribed) == (28, 1, 1)
    assert calls[1] == ["r3@example.com", "r20@example.com"]
    assert store.count_by_status(engine)[ACTIVE] == 29
    assert store.get_subscriber(engine, "r3@example.com").name == "R 3"
    assert status_of(engine, "r20@example.com") is UNSUBSCRIBED


def test_export_then_import_roundtrips(engine: Engine, tmp_path: Path, new_database_url) -> None:
    import_csv(engine, EXAMPLE, source="example")
    add_subscriber(engine, "-dash@example.com", '=HYPERLINK("x"), "quoted"', source="+web")
    add_subscriber(engine, "left@example.net", "Zoë, Left")
    unsubscribe(engine, "left@example.net")
    store.insert_subscriber(engine, "gone@example.org", "Gone", status=BOUNCED)
    out = tmp_path / "export.csv"
    with out.open("w", encoding="utf-8", newline="") as handle:
        written = export_csv(engine, handle)
    original = {s.email: (s.name, s.status) for s in store.iter_subscribers(engine)}
    assert written == len(original)

    other = open_engine(new_database_url("other"))
    report = import_csv(other, out)
    assert report.invalid == [] and report.warnings == []
    assert report.added + report.suppressed == len(original)
    copied = {s.email: (s.name, s.status) for s in store.iter_subscribers(other)}
    assert copied == original


def test_export_guards_against_formulas_and_quotes_per_rfc_4180(engine: Engine) -> None:
    add_subscriber(engine, "-dash@example.com", "=SUM(A1:A9)", source="@import")
    add_subscriber(engine, "plain@example.com", 'Ann "Nan" Lee, Jr.', source="cli")
    buffer = io.StringIO(newline="")
    assert export_csv(engine, buffer) == 2
    lines = buffer.getvalue().split("\r\n")
    assert lines[0] == "email,name,status,source,created_at"
    assert lines[1].startswith("'-dash@example.com,'=SUM(A1:A9),active,'@import,")
    assert lines[2].startswith('plain@example.com,"Ann ""Nan"" Lee, Jr.",active,cli,')
    assert lines[2].endswith("Z") and lines[3] == ""


def test_export_of_one_status(engine: Engine) -> None:
    add_subscriber(engine, "a@example.com")
    add_subscriber(engine, "b@example.com")
    unsubscribe(engine, "b@example.com")
    buffer = io.StringIO()
    assert export_csv(engine, buffer, status=UNSUBSCRIBED) == 1
    assert "b@example.com" in buffer.getvalue() and "a@example.com" not in buffer.getvalue()


# Status changes


def test_add_reactivates_an_unsubscribed_address_and_warns(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    add_subscriber(engine, "ann@example.com", "Ann")
    unsubscribe(engine, "ann@example.com")
    with caplog.at_level(logging.WARNING, logger="newsletter.subscribers"):
        again = add_subscriber(engine, "ann@example.com")
    assert again.status is ACTIVE
    assert any("re-activated ann@example.com" in r.getMessage() for r in caplog.records)
    with engine.connect() as conn:
        row = conn.execute(select(subscribers).where(subscribers.c.id == again.id)).one()
    assert row.unsubscribed_at is None and row.confirmed_at is not None


def test_add_rejects_an_invalid_address(engine: Engine) -> None:
    with pytest.raises(InputError):
        add_subscriber(engine, "ann@")
    assert sum(store.count_by_status(engine).values()) == 0


def test_unsubscribe_is_idempotent_and_stamps_the_time(engine: Engine) -> None:
    add_subscriber(engine, "ann@example.com")
    before = utcnow()
    assert unsubscribe(engine, "ann@example.com") is True
    assert unsubscribe(engine, "ann@example.com") is False
    assert unsubscribe(engine, "nobody@example.com") is False
    with engine.connect() as conn:
        row = conn.execute(select(subscribers)).one()
    assert row.status == "unsubscribed" and row.unsubscribed_at >= before


def test_remove_keeps_the_record_so_an_import_cannot_re_add(engine: Engine, tmp_path: Path) -> None:
    add_subscriber(engine, "ann@example.com")
    assert remove_subscriber(engine, "Ann@example.com") is True
    import_csv(engine, write_csv(tmp_path / "l.csv", "email\nann@example.com\n"))
    assert status_of(engine, "ann@example.com") is UNSUBSCRIBED
    with pytest.raises(InputError, match="not on the list"):
        remove_subscriber(engine, "nobody@example.com")


def test_remove_with_delete_erases_the_row_and_its_deliveries(engine: Engine) -> None:
    ann = add_subscriber(engine, "ann@example.com")
    bob = add_subscriber(engine, "bob@example.com")
    now = utcnow()
    with engine.begin() as conn:
        edition_id = conn.execute(
            insert(editions)
            .values(
                date=now.date(),
                subject="s",
                preheader="p",
                html="h",
                text="t",
                slot_token="x",
                article_count=1,
                status="sent",
                created_at=now,
            )
            .returning(editions.c.id)
        ).scalar_one()
        for person in (ann, bob):
            conn.execute(
                insert(deliveries).values(
                    edition_id=edition_id,
                    subscriber_id=person.id,
                    email=person.email,
                    status="sent",
                    updated_at=now,
                )
            )
    assert remove_subscriber(engine, "ann@example.com", delete=True) is True
    assert store.get_subscriber(engine, "ann@example.com") is None
    with engine.connect() as conn:
        left = conn.execute(select(deliveries.c.subscriber_id)).scalars().all()
    assert left == [bob.id]
    assert store.delete_subscriber(engine, "ann@example.com") is False


def test_set_status_stamps_confirmed_and_unsubscribed_times(engine: Engine) -> None:
    store.insert_subscriber(engine, "ann@example.com", status=PENDING)
    with engine.connect() as conn:
        assert conn.execute(select(subscribers.c.confirmed_at)).scalar_one() is None
    assert store.set_status(engine, "ann@example.com", ACTIVE) is True
    assert store.set_status(engine, "ann@example.com", ACTIVE) is False
    assert store.set_status(engine, "ann@example.com", UNSUBSCRIBED) is True
    with engine.connect() as conn:
        row = conn.execute(select(subscribers)).one()
    assert row.confirmed_at is not None and row.unsubscribed_at is not None
    assert row.updated_at >= row.created_at


# Queries


def test_iter_subscribers_keyset_pages_return_every_row_once(engine: Engine) -> None:
    rows = [ImportRow(f"p{n}@example.com", f"P {n}") for n in range(1050)]
    upsert_imported(engine, rows, "test")
    for n in range(0, 1050, 3):
        store.set_status(engine, f"p{n}@example.com", UNSUBSCRIBED)
    seen = [s.id for s in store.iter_subscribers(engine, batch_size=100)]
    assert len(seen) == 1050 and seen == sorted(set(seen))
    left = list(store.iter_subscribers(engine, UNSUBSCRIBED, batch_size=7))
    assert len(left) == 350 and all(s.status is UNSUBSCRIBED for s in left)
    assert len({s.id for s in left}) == 350
    assert len(list(store.iter_subscribers(engine, batch_size=1050))) == 1050


def test_count_by_status_lists_every_status(engine: Engine) -> None:
    assert store.count_by_status(engine) == dict.fromkeys(SubscriberStatus, 0)
    store.insert_subscriber(engine, "a@example.com")
    store.insert_subscriber(engine, "b@example.com", status=BOUNCED)
    assert store.count_by_status(engine) == {ACTIVE: 1, PENDING: 0, UNSUBSCRIBED: 0, BOUNCED: 1}


def test_search_is_a_case_insensitive_substring_with_wildcards_escaped(engine: Engine) -> None:
    for address in ("Ann.Lee@Example.com", "ann_b@example.org", "annxb@example.org", "z@x.net"):
        store.insert_subscriber(engine, address)
    assert [s.email for s in store.search_subscribers(engine, "ANN")] == [
        "Ann.Lee@Example.com",
        "ann_b@example.org",
        "annxb@example.org",
    ]
    assert [s.email for s in store.search_subscribers(engine, "n_b")] == ["ann_b@example.org"]
    assert store.search_subscribers(engine, "%") == []
    assert len(store.search_subscribers(engine, "example", limit=2)) == 2
