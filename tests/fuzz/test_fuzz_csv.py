"""Fuzzing CSV import: known-good rows always land; every refused row has its line and reason."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session, select

from outreach.app import App
from outreach.errors import InputError
from outreach.models import Prospect
from outreach.prospect import import_csv
from tests.fuzz.conftest import fuzz_settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HEADER = ["email", "first_name", "last_name", "company", "timezone", "notes"]
_COUNTER = itertools.count()

EMAILS = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "ann@example.com",
            "ANN@EXAMPLE.COM ",
            "not-an-email",
            "@example.com",
            "ann@",
            "ann@@example.com",
            "ann@example",
            "ann..b@example.com",
            "ännä@exämple.com",
            "ann@xn--exmple-cua.com",
            '"quoted local"@example.com',
            "ann@[127.0.0.1]",
            "ann@example.com\x00",
            "a" * 65 + "@example.com",
            "b@" + "x" * 300 + ".com",
            "\ufeffann@example.com",
            "ann@exam\u200bple.com",
            "\U0001d4ea\U0001d4f7\U0001d4f7@example.com",
            "ann@example.com,bob@example.com",
        ]
    ),
    st.emails().map(str),
    st.text(max_size=20),
)
CELLS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["", '"', '""', ",", "\r", "\n", "\r\n", "\x00", "\ufeff", "=1+1", "Europe/Stockholm"]
    ),
    st.sampled_from(["Mars/Olympus", "../../etc/passwd", "UTC", "utc", "\u202eevil", "é" * 100]),
)


@st.composite
def random_rows(draw: st.DrawFn) -> list[str]:
    """A row of cells: too few, the right count or too many; odd values everywhere."""
    count = draw(st.integers(min_value=1, max_value=len(HEADER) + 2))
    row = [draw(CELLS) for _ in range(count)]
    if draw(st.booleans()):
        row[0] = draw(EMAILS)
    return row


def _good_row(tag: str, index: int) -> list[str]:
    return [f"good{index}.{tag}@example.com", f"Ann{index}", "Rep", "Acme", "Europe/Stockholm", ""]


def _write(
    path: Path, header: list[str], records: list[list[str]], crlf: bool, bom: bool
) -> list[int]:
    """Write the CSV; the first physical line of each record, in order."""
    buffer = io.StringIO(newline="")
    terminator = "\r\n" if crlf else "\n"
    writer = csv.writer(buffer, lineterminator=terminator)
    # QUOTE_MINIMAL leaves a lone "\r" bare when the terminator is "\n": quote such rows
    quoted = csv.writer(buffer, lineterminator=terminator, quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    starts: list[int] = []
    line = 2
    for record in records:
        before = buffer.tell()
        breaks = any("\r" in cell or "\n" in cell for cell in record)
        (quoted if breaks else writer).writerow(record)
        starts.append(line)
        written = buffer.getvalue()[before:]
        # a record spans as many lines as the terminator and the (quoted) line breaks inside
        line += written.count("\n") + written.replace("\r\n", "").count("\r")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))
    return starts


def _emails(app: App) -> set[str]:
    with Session(app.engine) as session:
        return set(session.exec(select(Prospect.email)).all())


@fuzz_settings(40)
@given(
    randoms=st.lists(random_rows(), max_size=12),
    good_count=st.integers(min_value=1, max_value=5),
    data=st.data(),
    crlf=st.booleans(),
    bom=st.booleans(),
    header_style=st.sampled_from(["plain", "upper", "spaced"]),
)
def test_good_rows_always_land(
    app: App,
    workdir: Path,
    randoms: list[list[str]],
    good_count: int,
    data: st.DataObject,
    crlf: bool,
    bom: bool,
    header_style: str,
) -> None:
    tag = str(next(_COUNTER))
    goods = [_good_row(tag, i) for i in range(good_count)]
    records: list[list[str]] = list(randoms)
    positions = sorted(
        data.draw(st.lists(st.integers(0, len(records)), min_size=good_count, max_size=good_count))
    )
    for offset, (position, good) in enumerate(zip(positions, goods, strict=True)):
        records.insert(position + offset, good)
    header = {
        "plain": HEADER,
        "upper": [h.upper() for h in HEADER],
        "spaced": [f" {h} " for h in HEADER],
    }[header_style]
    path = workdir / f"fuzz-{tag}.csv"
    starts = _write(path, header, records, crlf, bom)

    report = import_csv(app.engine, path, NOW)

    stored = _emails(app)
    for good in goods:
        assert good[0] in stored, f"good row {good[0]} was not imported: {report.refused}"
    good_lines = {starts[i] for i, record in enumerate(records) if record in goods}
    random_lines = {starts[i] for i, record in enumerate(records) if record not in goods}
    for line, reason in report.refused:
        assert line in random_lines, (line, reason, good_lines)
        assert reason.strip(), line
    refused_lines = {line for line, _ in report.refused}
    assert len(refused_lines) == len(report.refused), "a row refused twice"
    assert report.imported <= len(records)
    for line, warning in report.warnings:
        assert line in starts and warning.strip()


@fuzz_settings(40)
@given(
    body=st.one_of(
        st.text(max_size=200),
        st.lists(
            st.sampled_from(
                ['"', ",", "\r", "\n", "\r\n", "a@b.co", "x", '""', "\x00", "\ufeff", " "]
            ),
            max_size=40,
        ).map("".join),
    ),
    header=st.sampled_from(["email", "Email,Name", "name,email", "email,email", "e-mail"]),
)
def test_junk_after_header_never_crashes(app: App, workdir: Path, body: str, header: str) -> None:
    path = workdir / f"junk-{next(_COUNTER)}.csv"
    path.write_text(header + "\n" + body, encoding="utf-8", newline="")
    if "email" not in [h.strip().lower() for h in header.split(",")]:
        with pytest.raises(InputError, match=r":1: the header has no 'email' column"):
            import_csv(app.engine, path, NOW)
        return
    report = import_csv(app.engine, path, NOW)
    for line, reason in report.refused:
        assert line >= 2 and reason.strip()


@pytest.mark.parametrize("text", ["", "\n", "name,company\nann@example.com,Acme\n", "\ufeff"])
def test_missing_email_header_is_an_input_error(app: App, workdir: Path, text: str) -> None:
    path = workdir / "no-email.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r":1: the header has no 'email' column"):
        import_csv(app.engine, path, NOW)


# --- crashes found by fuzzing, now fixed -------------------------------------


def test_invalid_utf8_row_is_refused(app: App, workdir: Path) -> None:
    path = workdir / "latin1.csv"
    path.write_bytes(b"email,first_name\nann@example.com,Ann\nbob@example.com,\xff\n")
    report = import_csv(app.engine, path, NOW)
    assert "ann@example.com" in _emails(app) and [line for line, _ in report.refused] == [3]


def test_huge_cell_is_refused(app: App, workdir: Path) -> None:
    path = workdir / "huge.csv"
    path.write_text(
        "email,notes\nann@example.com,ok\nbob@example.com," + "x" * 131_073 + "\n",
        encoding="utf-8",
    )
    report = import_csv(app.engine, path, NOW)
    assert "ann@example.com" in _emails(app) and [line for line, _ in report.refused] == [3]


def test_overlong_timezone_is_refused(app: App, workdir: Path) -> None:
    path = workdir / "long-tz.csv"
    path.write_text(
        "email,timezone\nann@example.com,UTC\nbob@example.com," + "a" * 256 + "\n",
        encoding="utf-8",
    )
    report = import_csv(app.engine, path, NOW)
    assert "ann@example.com" in _emails(app) and [line for line, _ in report.refused] == [3]
