"""CSV import on PostgreSQL (its COPY path): upserts, merges, blanks never erase."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from outreach.db import make_engine, transaction, upgrade
from outreach.models import Prospect
from outreach.prospect import import_csv

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_import_twice_merges_rows(tmp_path: Path, pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    first = tmp_path / "a.csv"
    first.write_text(
        "email,first_name,company,industry\n"
        "Ann@Example.com,Ann,Volvo,cars\n"
        "bad-address,X,Y,\n"
        "bo@example.com,Bo,Ikea,furniture\n"
    )
    report = import_csv(engine, first, NOW)
    assert report.imported == 2 and [line for line, _ in report.refused] == [3]
    second = tmp_path / "b.csv"
    second.write_text("email,first_name,company,size\nann@example.com,,Volvo Cars,large\n")
    assert import_csv(engine, second, NOW).imported == 1
    with transaction(engine) as session:
        people = {p.email: p for p in session.scalars(sa.select(Prospect))}
    assert set(people) == {"ann@example.com", "bo@example.com"}
    ann = people["ann@example.com"]
    assert (ann.first_name, ann.company) == ("Ann", "Volvo Cars")
    assert ann.fields == {"industry": "cars", "size": "large"}
    engine.dispose()
