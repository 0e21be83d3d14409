"""Subscribers: validation, CSV import/export, status changes, and the store queries under them.

Every test uses a real database from `new_database_url`: a SQLite file in
tmp_path, or PostgreSQL with --db=postgresql.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select, text

from newsletter import subscribers as subscribers_module
from newsletter.errors import InputError, StoreError
from newsletter.models import SubscriberStatus
from newsletter.store import subscribers as store
from newsletter.store.engine import open_engine, utcnow
from newsletter.store.schema import deliveries, editions, subscribers
from newsletter.subscribers import (
    ImportInterruptedError,
    add_subscriber,
    clean_name,
    export_csv,
    import_csv,
    parse_csv,
    remove_subscriber,
    unsubscribe,
    validate_email,
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


# Validation and cleaning


def test_validate_email_normalizes_the_domain_and_keeps_the_local_part() -> None:
    assert validate_email("  Ann.Lee@EXAMPLE.COM ") == "Ann.Lee@example.com"


@pytest.mark.parametrize("bad", ["", "ann", "ann@", "@example.com", "a@@example.com", "a@b"])
def test_validate_email_raises_input_error_with_the_reason(bad: str) -> None:
    with pytest.raises(InputError, match="not a valid email address: .+"):
        validate_email(bad)


def test_clean_name_removes_line_breaks_controls_and_bidi_overrides() -> None:
    assert clean_name("Ann\r\nBcc: evil@example.com\x00\t Lee\u202e") == (
        "Ann Bcc: evil@example.com Lee"
    )
    assert clean_name("  Zoë   Łukasz 美咲 ") == "Zoë Łukasz 美咲"


@given(st.text(max_size=300))
def test_clean_name_leaves_no_control_character_and_is_stable(raw: str) -> None:
    cleaned = clean_name(raw)
    assert not any(char in cleaned for char in "\r\n\t\x00\x1b\u2028\u2029\u202e")
    assert clean_name(cleaned) == cleaned
    assert len(cleaned) <= 200


# Parsing


def test_invalid_rows_are_reported_with_editor_line_numbers() -> None:
    result = parse_csv(DATA / "invalid.csv")
    assert [row.email for row in result.rows] == [
        "good1@example.com",
        "good2@example.com",
        "good3@example.org",
        "good4@example.net",
    ]
    assert [row.line for row in result.rows] == [2, 3, 8, 10]
    assert result.rows[1].name == "Two Lines"
    assert [line for line, _ in result.problems] == [5, 7, 9]
    reasons = dict(result.problems)
    assert "not-an-address" in reasons[5]
    assert reasons[7] == "no email address"
    assert "bad@@example.com" in reasons[9]


def test_latin1_file_is_read_with_a_warning() -> None:
    result = parse_csv(DATA / "latin1.csv")
    assert [row.name for row in result.rows] == ["Zoë Ångström", "José Núñez"]
    assert any("not UTF-8" in warning for warning in result.warnings)


def test_windows_1252_punctuation_is_decoded() -> None:
    result = parse_csv(DATA / "cp1252.csv")
    assert result.rows[0].name == "Seán O’Brien"
    assert result.encoding == "cp1252"


def test_utf8_bom_file_reads_without_a_warning_and_matches_the_header() -> None:
    result = parse_csv(DATA / "bom.csv")
    assert [(row.email, row.name) for row in result.rows] == [
        ("lukasz@example.com", "Łukasz Wąs"),
        ("misaki@example.org", "美咲"),
    ]
    assert result.warnings == ()


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("email\tname\r\nzoe@example.com\tZoë\r\n", encoding="utf-16")
    result = parse_csv(path)
    assert [(row.email, row.name) for row in result.rows] == [("zoe@example.com", "Zoë")]


def test_semicolon_file_with_first_and_last_name_columns() -> None:
    result = parse_csv(DATA / "semicolon.csv")
    assert result.delimiter == ";"
    assert [(row.email, row.name) for row in result.rows] == [
        ("anna@example.com", "Anna Kowalska"),
        ("ben@example.net", "Ben"),
        ("carla@example.org", "Carla; Maria Rossi"),
    ]


def test_tab_delimiter_and_excel_sep_line(tmp_path: Path) -> None:
    tabbed = write_csv(tmp_path / "t.csv", "Mail\tFull Name\nann@example.com\tAnn Lee\n")
    assert [(r.email, r.name) for r in parse_csv(tabbed).rows] == [("ann@example.com", "Ann Lee")]
    excel = write_csv(tmp_path / "x.csv", "sep=;\nemail;name\nann@example.com;Ann\nbad;X\n")
    result = parse_csv(excel)
    assert [r.email for r in result.rows] == ["ann@example.com"]
    assert [line for line, _ in result.problems] == [4]


def test_wrong_columns_name_the_file_the_header_and_the_expected_columns() -> None:
    with pytest.raises(InputError) as caught:
        parse_csv(DATA / "wrong_columns.csv")
    message = str(caught.value)
    assert "wrong_columns.csv" in message
    assert "'name', 'phone'" in message
    assert "email, e-mail, email address" in message


def test_a_file_without_a_header_row_says_so() -> None:
    with pytest.raises(InputError, match="header row"):
        parse_csv(DATA / "no_header.csv")


def test_an_empty_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        parse_csv(write_csv(tmp_path / "empty.csv", ""))
    with pytest.raises(InputError, match="no header row"):
        parse_csv(write_csv(tmp_path / "blank.csv", "\n \n"))


def test_duplicates_merge_first_wins_and_a_later_name_fills_a_missing_one(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv",
        "email,name\nAnn@Example.com,\nann@example.com,Ann\nbob@example.com,Bob\n"
        "BOB@example.com,Robert\n",
    )
    result = parse_csv(path)
    assert [(r.email, r.name, r.line) for r in result.rows] == [
        ("Ann@example.com", "Ann", 2),
        ("bob@example.com", "Bob", 4),
    ]
    assert any("2 repeated" in warning and "3, 5" in warning for warning in result.warnings)


def test_status_column_only_suppresses_and_unknown_values_are_invalid(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "s.csv",
        "email,status\na@example.com,Subscribed\nb@example.com,unsubscribed\n"
        "c@example.com,cleaned\nd@example.com,pending\ne@example.com,spam\n",
    )
    result = parse_csv(path)
    assert [(r.email, r.status) for r in result.rows] == [
        ("a@example.com", None),
        ("b@example.com", UNSUBSCRIBED),
        ("c@example.com", BOUNCED),
        ("d@example.com", None),
    ]
    assert [line for line, _ in result.problems] == [6]


@pytest.mark.timeout(30)
def test_only_a_regular_file_is_imported(tmp_path: Path) -> None:
    """A FIFO blocked the import for ever, /dev/zero read for ever; now one line each."""
    fifo = tmp_path / "list.csv"
    os.mkfifo(fifo)
    link = tmp_path / "zero.csv"
    link.symlink_to("/dev/zero")
    cases = [
        (fifo, "is a named pipe (FIFO), not a regular file"),
        (Path("/dev/zero"), "is a character device (like /dev/zero or a terminal), not a regular"),
        (link, "is a character device (like /dev/zero or a terminal), not a regular"),
        (tmp_path, "is a directory, not a regular file"),
    ]
    for path, message in cases:
        with pytest.raises(InputError) as caught:
            parse_csv(path)
        assert caught.value.where == str(path)
        assert caught.value.message.startswith(message)
        assert caught.value.hint == "export the list to a CSV file and import that file"


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscribers_module, "MAX_CSV_BYTES", 64)
    path = write_csv(tmp_path / "big.csv", "email\n" + "someone@example.com\n" * 4)
    with pytest.raises(InputError, match=r"is too large \(86 bytes; a subscriber list is at most"):
        parse_csv(path)


def test_a_row_past_the_csv_field_limit_is_one_problem_not_the_file(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "f.csv",
        f"email,name\nann@example.com,Ann\nbob@example.com,{'x' * 200_000}\ncat@example.com,Cat\n",
    )
    result = parse_csv(path)
    assert [(r.email, r.line) for r in result.rows] == [
        ("ann@example.com", 2),
        ("cat@example.com", 4),
    ]
    assert result.problems == (
        (3, "not a readable CSV row: field larger than field limit (131072)"),
    )


def test_a_row_that_breaks_the_reader_unexpectedly_is_one_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected: validation raises something nobody foresaw for one address."""
    real = subscribers_module.validate_email

    def validate(address: str) -> str:
        if address.startswith("bob"):
            raise RuntimeError("injected")
        return real(address)

    monkeypatch.setattr(subscribers_module, "validate_email", validate)
    path = write_csv(tmp_path / "r.csv", "email\nann@example.com\nbob@example.com\ncat@x.org\n")
    result = parse_csv(path)
    assert [r.email for r in result.rows] == ["ann@example.com", "cat@x.org"]
    assert result.problems == ((3, "could not be read (RuntimeError: injected)"),)


def test_the_example_list_parses_cleanly() -> None:
    result = parse_csv(EXAMPLE)
    assert 8 <= len(result.rows) <= 12
    assert result.problems == () and result.warnings == ()
    assert any(not row.name.isascii() for row in result.rows)


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
    assert "added 1" in report.summary() and "invalid 1" in report.summary()


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
    rows = [store.ImportRow(f"p{n}@example.com", f"P {n}") for n in range(1050)]
    store.upsert_imported(engine, rows, "test")
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
