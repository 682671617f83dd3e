"""Scheduler pass speed: 10,000 due steps among 1,000,000 enrollments vs among 10,000.

Run: python bench/schedule.py [--total 1000000] [--due 10000]
Needs PostgreSQL (postgres@127.0.0.1) and Redis. Dispatch means claimed in the database and
enqueued on Redis. The ratio large/small shows that a pass costs what is due, not what is
enrolled.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import redis
import sqlalchemy as sa

from bench.common import REDIS_URL, fresh_database, report, seed_prospects, timed
from outreach.app import build_app
from outreach.runtime import start
from outreach.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def populate(url: str, total: int, due: int) -> None:
    """Fill prospects and enrollments with SQL: `due` of them due before NOW."""
    engine = sa.create_engine(url)
    with engine.begin() as c:
        seed_prospects(c, total)
        c.execute(
            sa.text("""
            INSERT INTO enrollment (prospect_id, sequence_id, version_id, state, step, next_run_at,
                sender, exclusive, enrolled_at, updated_at)
            SELECT g, 'bench', 1, 'active', 1,
                CASE WHEN g % (:total / :due) = 0
                     THEN CAST(:now AS timestamptz) - interval '1 minute'
                     ELSE CAST(:now AS timestamptz) + (g % 1000) * interval '1 hour' END,
                'Ann <ann@acme.example>', true, now(), now()
            FROM generate_series(1, :total) g"""),
            {"total": total, "due": due, "now": NOW},
        )
    # a freshly loaded table pays once for setting hint bits on first read; a live one
    # has long since paid it, so both runs start from a vacuumed table
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()


def one_run(total: int, due: int) -> tuple[int, float, float]:
    """Dispatch the due steps twice: first from a vacuumed table, then again once warm."""
    url = fresh_database("outreach_bench_schedule")
    settings = Settings(
        database_url=url,
        broker_url=REDIS_URL,
        sequences_dir=ROOT / "sequences",
        templates_dir=ROOT / "templates",
        secret_key="bench",
        _env_file=None,  # type: ignore[call-arg]
    )
    app = build_app(settings)
    populate(url, total, due)
    seconds = []
    for _ in range(2):
        redis.Redis.from_url(REDIS_URL).flushdb()
        runtime = start(app)
        with timed() as spent:
            dispatched = runtime.tick(NOW)
        runtime.close()
        seconds.append(spent[0])
        app = build_app(settings)
        with app.engine.begin() as c:  # the same steps due again
            c.execute(sa.text("DELETE FROM dispatch_claim"))
    app.close()
    return dispatched, seconds[0], seconds[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    args = parser.parse_args()
    small_n, small_s, small_warm = one_run(args.due, args.due)
    large_n, large_s, large_warm = one_run(args.total, args.due)
    assert small_n == large_n == args.due, (small_n, large_n)
    report(
        "schedule",
        {
            "due steps": args.due,
            f"first pass, seconds among {args.due:,}": small_s,
            f"first pass, seconds among {args.total:,}": large_s,
            "first pass ratio large/small (target < 1.5)": large_s / small_s,
            f"warm pass, seconds among {args.due:,}": small_warm,
            f"warm pass, seconds among {args.total:,}": large_warm,
            "warm pass ratio large/small": large_warm / small_warm,
            "steps/s dispatched, large first pass (target >= 5000)": large_n / large_s,
        },
    )


if __name__ == "__main__":
    main()
