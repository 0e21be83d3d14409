"""Reading subscriber CSV files (subscriber_csv.py) and checking addresses (addresses.py).

Pure over their input: no database. The files are in tests/data/subscribers, or
written by the test into tmp_path.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter import subscriber_csv
from newsletter.addresses import clean_name, validate_email
from newsletter.errors import InputError
from newsletter.models import SubscriberStatus
from newsletter.subscriber_csv import parse_csv

DATA = Path(__file__).parent / "data" / "subscribers"
EXAMPLE = Path(__file__).parent.parent / "subscribers" / "example.csv"
UNSUBSCRIBED, BOUNCED = SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED


def write_csv(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


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
    monkeypatch.setattr(subscriber_csv, "MAX_CSV_BYTES", 64)
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
    real = subscriber_csv.validate_email

    def validate(address: str) -> str:
        if address.startswith("bob"):
            raise RuntimeError("injected")
        return real(address)

    monkeypatch.setattr(subscriber_csv, "validate_email", validate)
    path = write_csv(tmp_path / "r.csv", "email\nann@example.com\nbob@example.com\ncat@x.org\n")
    result = parse_csv(path)
    assert [r.email for r in result.rows] == ["ann@example.com", "cat@x.org"]
    assert result.problems == ((3, "could not be read (RuntimeError: injected)"),)


def test_the_example_list_parses_cleanly() -> None:
    result = parse_csv(EXAMPLE)
    assert 8 <= len(result.rows) <= 12
    assert result.problems == () and result.warnings == ()
    assert any(not row.name.isascii() for row in result.rows)


# Writing: the formula guard of the export

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SEPARATORS = (",", ";", "\t", "|")
CSV_INJECTIONS = (
    "x;=cmd|' /C calc'!A0",  # the issue's: bare in a `,` file, a formula in a `;` one
    "=cmd|' /C calc'!A0",
    'a|=HYPERLINK("https://evil.example")',
    "Ann, +1 (555) 010",
    "Bob\t@SUM(A1:A9)",
    '"; =1+1',
    "x;'=still a formula after one quote",
    "two\r\n-lines",
    "tab;\t=after a tab",
)


def spreadsheet_fields(data: str) -> Iterator[str]:
    """Every field a spreadsheet could see in `data`: each separator, quotes honoured or not."""
    for delimiter in SEPARATORS:
        for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_NONE):
            for skip_spaces in (False, True):
                reader = csv.reader(
                    io.StringIO(data, newline=""),
                    delimiter=delimiter,
                    quoting=quoting,
                    skipinitialspace=skip_spaces,
                )
                for row in reader:
                    yield from row


def formulas_in(data: str) -> list[str]:
    return [field for field in spreadsheet_fields(data) if field.startswith(FORMULA_START)]


def exported(rows: list[tuple[str, ...]]) -> str:
    out = io.StringIO(newline="")
    assert subscriber_csv.write_csv(out, ("email", "name"), rows) == len(rows)
    return out.getvalue()


@pytest.mark.parametrize("value", CSV_INJECTIONS)
def test_no_separator_or_quoting_finds_a_formula_in_an_exported_cell(value: str) -> None:
    """Attack: "the CSV export's formula guard misses `x;=cmd|' /C calc'!A0` (written bare;
    a `;`-separated spreadsheet sees a formula)"."""
    data = exported([("ann@example.com", value), (f"a|{value}@example.com", "Ann")])
    assert formulas_in(data) == []
    read = list(csv.reader(io.StringIO(data, newline="")))[1:]
    one_line = value.replace("\r\n", " ")  # a cell is written on one line
    assert [[subscriber_csv._unguard(cell) for cell in row] for row in read] == [
        ["ann@example.com", one_line],
        [f"a|{one_line}@example.com", "Ann"],
    ]


@given(
    st.lists(
        st.tuples(st.text(alphabet="=+-@\t\r\n,;|\"' ax", max_size=10), st.text(max_size=6)),
        max_size=4,
    )
)
def test_the_guard_leaves_no_formula_and_reading_undoes_it_exactly(
    rows: list[tuple[str, str]],
) -> None:
    data = exported(rows)
    assert formulas_in(data) == []
    read = list(csv.reader(io.StringIO(data, newline="")))[1:]
    one_line = [tuple(re.sub(r"\r\n?|\n", " ", cell) for cell in row) for row in rows]
    assert [tuple(subscriber_csv._unguard(cell) for cell in row) for row in read] == one_line


def test_an_export_of_normal_names_reads_back_as_the_same_people(tmp_path: Path) -> None:
    people = [
        ("ann@example.com", "Ann Lee"),
        ("zoe@example.org", "Zoë Müller, Jr."),
        ("o.brien@example.net", "Seán O'Brien"),
        ("dash-in@example.com", "Jean-Luc"),
        ("-lead@example.com", "=Not A Formula"),
    ]
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        subscriber_csv.write_csv(out, ("email", "name"), people)
    assert path.read_text(encoding="utf-8").splitlines()[3] == "o.brien@example.net,Seán O'Brien"
    result = parse_csv(path)
    assert [(row.email, row.name) for row in result.rows] == people
    assert result.problems == () and result.warnings == ()
