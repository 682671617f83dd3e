"""Inbound throughput: classification and ingest over the corpus, beside the stdlib parser.

    python bench/inbound.py [--rounds 5] [--corpus DIR] [--pg]

Each round times, on one core, over the same messages held in memory:
- `parse`: the stdlib `email` parser alone (compat32, the policy outreach reads with);
- `classify`: parse plus outreach's classifier (what `outreach classify` does, minus I/O);
- `ingest`: the whole path into a fresh database (kept, classified, matched, acted on).
The figure is the ratio of each rate to the parser's; the medians are reported.
"""

from __future__ import annotations

import argparse
import email
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from email import policy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_database, report
from outreach.app import build_app
from outreach.inbound.classify import classify
from outreach.inbound.mime import parse
from outreach.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def load(folders: list[Path]) -> list[bytes]:
    files = [f for folder in folders if folder.is_dir() for f in sorted(folder.rglob("*.eml"))]
    return [f.read_bytes() for f in files]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def time_parse(messages: list[bytes], strict_policy: bool = False) -> float:
    start = time.perf_counter()
    for raw in messages:
        if strict_policy:
            email.message_from_bytes(raw, policy=policy.default)
        else:
            email.message_from_bytes(raw)
    return time.perf_counter() - start


def time_classify(messages: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in messages:
        classify(parse(raw), NOW)
    return time.perf_counter() - start


def time_ingest(messages: list[bytes], database_url: str, work: Path) -> float:
    from outreach.inbound.ingest import ingest

    settings = Settings(
        database_url=database_url,
        outbox_dir=work / "outbox",
        sequences_dir=work,
        templates_dir=work,
        secret_key="bench",
        _env_file=None,  # type: ignore[call-arg]
    )
    app = build_app(settings)
    try:
        start = time.perf_counter()
        for index, raw in enumerate(messages):
            # a unique first line so every copy is a new message, not a duplicate
            ingest(app, b"X-Bench: %d\r\n" % index + raw, NOW, source="bench")
        return time.perf_counter() - start
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=ROOT / "tests/corpora/bounces")
    parser.add_argument("--pg", action="store_true", help="also ingest into PostgreSQL")
    args = parser.parse_args()
    messages = load([args.corpus, ROOT / "tests/fixtures"])  # the corpus and reply fixtures
    if not messages:
        sys.exit(f"no .eml files under {args.corpus}")
    count = len(messages)
    time_classify(messages)  # warm: regexes compiled, modules imported
    parse_s, strict_s, classify_s, sqlite_s, pg_s = [], [], [], [], []
    for round_ in range(args.rounds):
        parse_s.append(time_parse(messages))
        strict_s.append(time_parse(messages, strict_policy=True))
        classify_s.append(time_classify(messages))
        with tempfile.TemporaryDirectory() as work:
            sqlite_s.append(time_ingest(messages, f"sqlite:///{work}/bench.db", Path(work)))
            if args.pg:
                url = fresh_database("outreach_bench_inbound")
                pg_s.append(time_ingest(messages, url, Path(work)))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    parse_rate = rate(count, statistics.median(parse_s))
    figures: dict[str, object] = {
        "messages": count,
        "bytes": sum(len(m) for m in messages),
        "parse_msgs_per_s (stdlib compat32)": parse_rate,
        "parse_msgs_per_s (stdlib policy.default)": rate(count, statistics.median(strict_s)),
        "classify_msgs_per_s": rate(count, statistics.median(classify_s)),
        "classify_vs_parse_ratio": rate(count, statistics.median(classify_s)) / parse_rate,
        "ingest_sqlite_msgs_per_s": rate(count, statistics.median(sqlite_s)),
        "ingest_sqlite_vs_parse_ratio": rate(count, statistics.median(sqlite_s)) / parse_rate,
    }
    if pg_s:
        figures["ingest_postgres_msgs_per_s"] = rate(count, statistics.median(pg_s))
        figures["ingest_postgres_vs_parse_ratio"] = (
            rate(count, statistics.median(pg_s)) / parse_rate
        )
    report("inbound", figures)


if __name__ == "__main__":
    main()
