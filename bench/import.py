"""CSV import speed: 100,000 rows upserted, on SQLite and on PostgreSQL.

Run: python -m bench.import [--rows 100000]
Target: at least 20,000 rows/s. The baseline beside it is the stdlib csv module reading the
same file, so the ratio shows what validation and the upsert cost on top of reading.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import fresh_database, report, timed
from outreach.db import make_engine, upgrade
from outreach.prospect import import_csv

ZONES = ["Europe/Stockholm", "America/New_York", "Asia/Kolkata", "", "Australia/Sydney"]


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["email", "first_name", "last_name", "company", "title", "timezone", "industry"]
        )
        for i in range(rows):
            writer.writerow(
                [
                    f"person{i}@company{i % 997}.example",
                    f"First{i}",
                    f"Last{i}",
                    f"Company {i % 997}",
                    "VP Sales",
                    ZONES[i % len(ZONES)],
                    "software",
                ]
            )


def read_only(path: Path) -> int:
    with path.open(newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def run_import(url: str, path: Path) -> tuple[int, float]:
    engine = make_engine(url)
    upgrade(engine)
    with timed() as seconds:
        result = import_csv(engine, path, datetime.now(UTC))
    engine.dispose()
    assert not result.refused
    return result.imported, seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prospects.csv"
        write_csv(path, args.rows)
        with timed() as baseline:
            read_only(path)
        sqlite_n, sqlite_s = run_import(f"sqlite:///{folder}/bench.db", path)
        pg_n, pg_s = run_import(fresh_database("outreach_bench_import"), path)
        _, pg_again = run_import(f"{fresh_database('outreach_bench_import2')}", path)
    report(
        "import",
        {
            "rows": args.rows,
            "csv read alone, rows/s (baseline)": args.rows / baseline[0],
            "SQLite import, rows/s": sqlite_n / sqlite_s,
            "PostgreSQL import, rows/s": pg_n / pg_s,
            "SQLite import / csv read": (args.rows / baseline[0])
            and (sqlite_n / sqlite_s) / (args.rows / baseline[0]),
            "PostgreSQL import / csv read": (pg_n / pg_s) / (args.rows / baseline[0]),
            "target rows/s": 20_000,
        },
    )
    _ = pg_again


if __name__ == "__main__":
    main()
