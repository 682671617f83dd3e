"""Helpers shared by the benchmarks: a scratch PostgreSQL database and result printing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

PG_SERVER = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")
RESULTS = Path(__file__).parent / "results"


def fresh_database(name: str) -> str:
    """Drop and create a PostgreSQL database; returns its URL."""
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return f"{PG_SERVER}/{name}"


def seed_prospects(c: sa.Connection, total: int) -> None:
    """A sequence version 'bench' and `total` prospects p1@example.com…, written in SQL."""
    c.execute(
        sa.text("""
        INSERT INTO sequenceversion (sequence_id, content_hash, snapshot, created_at)
        VALUES ('bench', 'x', '{}', now())""")
    )
    c.execute(
        sa.text("""
        INSERT INTO prospect (email, fields, score, created_at, updated_at)
        SELECT 'p' || g || '@example.com', '{}', 0, now(), now()
        FROM generate_series(1, :total) g"""),
        {"total": total},
    )


@contextmanager
def timed() -> Iterator[list[float]]:
    """Measure the wall time of a block: the list holds the seconds afterwards."""
    box: list[float] = []
    start = time.perf_counter()
    yield box
    box.append(time.perf_counter() - start)


def report(name: str, figures: dict[str, object]) -> None:
    """Print the figures and keep them in bench/results/NAME.json."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
