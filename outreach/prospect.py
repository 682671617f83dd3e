"""Prospects: address normalization, upserts and CSV import."""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import select

from outreach.errors import InputError, UnknownProspect
from outreach.models import Prospect

MAX_CELL = 65_536  # the longest cell a row may have; longer rows are refused
# the csv module stops at 131,072 characters by default: let it read on, so the row
# with the long cell is refused by itself and the rows around it are kept
csv.field_size_limit(max(csv.field_size_limit(), 16 * 1024 * 1024))
COLUMNS = ("first_name", "last_name", "company", "title", "phone", "timezone", "owner")
CHUNK = 1000


ATEXT_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def normalize_email(address: str) -> str:
    """The canonical form of an address (lowercase), or InputError saying why it is invalid.

    email-validator decides; since most of its work is on the domain, and a list of
    prospects shares few domains, a plain ASCII local part is checked here and the domain's
    verdict is cached.
    """
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if at and len(local) <= 64 and len(address) <= 254 and ATEXT_LOCAL.fullmatch(local):
        return f"{local}@{_domain(domain, address)}".lower()
    return _validated(address)


def _domain(domain: str, address: str) -> str:
    try:
        return _domain_of(domain)
    except InputError as exc:
        raise InputError(f"invalid address {address!r}: {exc.__cause__}") from exc


@functools.lru_cache(maxsize=65536)
def _domain_of(domain: str) -> str:
    return _validated(f"postmaster@{domain}").partition("@")[2]


def _validated(address: str) -> str:
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InputError(f"invalid address {address!r}: {exc}") from exc
    return result.normalized.lower()


def check_timezone(name: str) -> str:
    """The name itself when it is an IANA timezone, else InputError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InputError(f"unknown timezone {name[:64]!r}") from exc
    return name


def find(session: Session, email: str) -> Prospect:
    """The prospect with this address, or UnknownProspect."""
    key = normalize_email(email)
    prospect = session.scalar(select(Prospect).where(Prospect.email == key))
    if prospect is None:
        raise UnknownProspect(f"no prospect {key}")
    return prospect


def display_name(prospect: Prospect) -> str | None:
    """First and last name joined, or None."""
    name = " ".join(p for p in (prospect.first_name, prospect.last_name) if p)
    return name or None


@dataclass
class Row:
    """One prospect's values as read from a file or an API call."""

    email: str
    values: dict[str, str | None]
    fields: dict[str, Any]
    line: int = 0


def parse_row(raw: dict[str, str | None], line: int) -> Row:
    """Validate one CSV row; InputError names what is wrong."""
    cleaned = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k}
    email = cleaned.pop("email", "")
    if not email:
        raise InputError("email is empty")
    values: dict[str, str | None] = {c: cleaned.pop(c, "") or None for c in COLUMNS}
    if values["timezone"]:
        check_timezone(values["timezone"])
    fields = {k: v for k, v in cleaned.items() if v}
    return Row(normalize_email(email), values, fields, line)


def upsert(session: Session, rows: list[Row], now: datetime) -> int:
    """Insert or update prospects by address; blank values never erase known ones."""
    if not rows:
        return 0
    existing = {
        p.email: p
        for p in session.scalars(
            select(Prospect).where(Prospect.email.in_([r.email for r in rows]))  # type: ignore[attr-defined]
        )
    }
    records = [_merged(existing.get(r.email), r, now) for r in rows]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _copy_upsert(connection, records)
    else:
        connection.execute(_upsert_statement(session), records)
    return len(records)


def _merged(old: Prospect | None, row: Row, now: datetime) -> dict[str, Any]:
    record: dict[str, Any] = {"email": row.email, "updated_at": now, "score": 0}
    for column in COLUMNS:
        record[column] = row.values.get(column) or (getattr(old, column) if old else None)
    record["fields"] = {**(old.fields if old else {}), **row.fields}
    record["created_at"] = old.created_at if old else now
    record["score"] = old.score if old else 0
    return record


def _upsert_statement(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Prospect.__table__)  # type: ignore[attr-defined]
    updated = {c: statement.excluded[c] for c in (*COLUMNS, "fields", "updated_at")}
    return statement.on_conflict_do_update(index_elements=["email"], set_=updated)


COPIED = ("email", *COLUMNS, "fields", "score", "created_at", "updated_at")


def _copy_upsert(connection: sa.Connection, records: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY the chunk into a temporary table, then one INSERT … ON CONFLICT."""
    raw = connection.connection.driver_connection
    assert raw is not None
    names = ", ".join(COPIED)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*COLUMNS, "fields", "updated_at"))
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS prospect_import "
            "(LIKE prospect INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY prospect_import ({names}) FROM STDIN") as copy:
            for record in records:
                copy.write_row([_copy_value(record[c]) for c in COPIED])
        cursor.execute(
            f"INSERT INTO prospect ({names}) SELECT {names} FROM prospect_import "
            f"ON CONFLICT (email) DO UPDATE SET {updates}"
        )
        cursor.execute("TRUNCATE prospect_import")


def _copy_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict) else value


@dataclass
class ImportReport:
    """What an import did: rows kept, rows refused with their line and reason, warnings."""

    imported: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)


def read_csv(path: Path, report: ImportReport) -> Iterator[Row]:
    """The valid rows of a CSV file; bad rows go to the report with their line number."""
    # bytes that are not UTF-8 are kept as surrogates so their row alone is refused
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
            raise InputError(f"{path}:1: the header has no 'email' column")
        line = reader.line_num + 1
        for raw in reader:
            yield from _checked(raw, line, report)
            line = reader.line_num + 1


def _checked(raw: dict[str, Any], line: int, report: ImportReport) -> Iterator[Row]:
    if None in raw:
        report.refused.append((line, "more cells than the header has columns"))
        return
    cells = [v for v in raw.values() if isinstance(v, str)]
    if any(len(v) > MAX_CELL for v in cells):
        report.refused.append((line, f"a cell longer than {MAX_CELL} characters"))
        return
    if any(not _is_text(v) for v in cells):
        report.refused.append((line, "not UTF-8 text"))
        return
    try:
        yield parse_row(raw, line)
    except InputError as exc:
        report.refused.append((line, str(exc)))


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def deduplicate(rows: Iterable[Row], report: ImportReport) -> list[Row]:
    """Keep the last row per address, warning about the earlier ones."""
    latest: dict[str, Row] = {}
    for row in rows:
        if row.email in latest:
            earlier = latest.pop(row.email).line
            report.warnings.append((row.line, f"{row.email} also on line {earlier}; this row wins"))
        latest[row.email] = row
    return list(latest.values())


def import_csv(
    engine: sa.Engine,
    path: Path,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Upsert every valid row of a CSV file in chunks, reporting the bad ones."""
    report = ImportReport()
    rows = deduplicate(read_csv(path, report), report)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        with Session(engine) as session, session.begin():
            report.imported += upsert(session, chunk, now)
        if progress:
            progress(len(chunk))
    return report


def ensure(session: Session, email: str, now: datetime, **values: str | None) -> Prospect:
    """The prospect with this address, created when new."""
    key = normalize_email(email)
    prospect = session.scalar(select(Prospect).where(Prospect.email == key))
    if prospect is None:
        prospect = Prospect(email=key, created_at=now, updated_at=now, fields={})
        session.add(prospect)
    for name, value in values.items():
        if value:
            setattr(prospect, name, value)
    session.flush()
    return prospect
