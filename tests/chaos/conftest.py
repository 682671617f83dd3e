"""Fixtures of the chaos suite: a fresh stack per scenario, and the report they add to."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach.app import build_app
from tests.chaos.harness import (
    LATENCY,
    PEOPLE,
    ROOT,
    SCALE,
    SETTINGS,
    ChaosSink,
    Cluster,
    Row,
    Stack,
    table,
)
from tests.conftest import make_settings, write_sequence, write_template

REPORT = Path(os.environ.get("CHAOS_REPORT", ROOT / "docs" / "reliability.md"))
_rows: list[Row] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is a chaos scenario: `pytest` alone leaves them out (see pyproject)."""
    for item in items:
        if "tests/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)


def write_chaos(workdir: Path) -> None:
    """Two emails, no wait between them, open around the clock."""
    write_template(workdir, "s1", "Hi {{ prospect.email }}, step one.\n", subject="Chaos step 1")
    write_template(workdir, "s2", "Hi {{ prospect.email }}, step two.\n", subject="Chaos step 2")
    write_sequence(
        workdir,
        "chaos",
        """
        name: Chaos
        sender: {from: "Ann <ann@acme.example>", address: "Acme AB"}
        schedule: {timezone: UTC, window: "00:00-24:00",
                   days: [mon, tue, wed, thu, fri, sat, sun]}
        steps:
          - email: {template: s1}
          - wait: 0 minutes
          - email: {template: s2}
        """,
    )


@pytest.fixture
def stack(workdir: Path, pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A chaos stack on real PostgreSQL and Redis; its processes start with `cluster`."""
    write_chaos(workdir)
    sink = ChaosSink(LATENCY).start()
    settings = make_settings(
        workdir, database_url=pg_url, broker_url=redis_url, smtp_url=sink.url()
    )
    app = build_app(settings)
    env = dict(os.environ)
    env.update({f"OUTREACH_{key}": value for key, value in SETTINGS.items()})
    env.update(
        OUTREACH_DATABASE_URL=pg_url,
        OUTREACH_BROKER_URL=redis_url,
        OUTREACH_SMTP_URL=sink.url(),
        OUTREACH_SEQUENCES_DIR=str(workdir / "sequences"),
        OUTREACH_TEMPLATES_DIR=str(workdir / "templates"),
        OUTREACH_SECRET_KEY="chaos-secret",
        OUTREACH_BASE_URL="https://outreach.example",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = Cluster(env, logs)
    stack = Stack(app=app, sink=sink, cluster=cluster)
    try:
        yield stack
    finally:
        cluster.stop()
        app.close()
        with contextlib.suppress(Exception):  # a scenario may have stopped it already
            sink.stop()


@pytest.fixture(scope="session")
def report() -> Iterator[list[Row]]:
    """The scenarios' rows; written to docs/reliability.md (or CHAOS_REPORT) at the end."""
    yield _rows
    if not _rows:
        return
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(_document(_rows))
    print(f"\nchaos report written to {REPORT}\n" + table(_rows))


def _document(rows: list[Row]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (ROOT / "tests" / "chaos" / "report_header.md").read_text()
    return header.format(
        when=when,
        scale=SCALE,
        people=PEOPLE,
        sends=PEOPLE * 2,
        cores=os.cpu_count(),
        table=table(rows),
    )
