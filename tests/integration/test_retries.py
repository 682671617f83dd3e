"""A 4xx from a real SMTP server is retried by Dramatiq's Retries middleware, then sent once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import service
from outreach.app import App, build_app
from outreach.db import transaction
from outreach.models import Send, SendStatus
from outreach.runtime import start
from outreach.scheduler import tick
from tests.conftest import make_settings, write_blast
from tests.conftest_smtp import SmtpSink


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def flaky_app(workdir: Path, sink: SmtpSink) -> Iterator[App]:
    write_blast(workdir)
    settings = make_settings(workdir, smtp_url=sink.url(), smtp_timeout=5, retry_backoff_ms=150)
    app = build_app(settings)
    yield app
    app.close()


def test_greylisting_4xx_is_retried_with_backoff_then_sent_once(
    flaky_app: App, sink: SmtpSink
) -> None:
    service.enroll_many(flaky_app, "blast", ["grey@example.com"], datetime.now(UTC))
    sink.replies["RCPT"] = "451 4.7.1 Greylisted, please try again"
    threading.Timer(0.6, sink.replies.clear).start()
    runtime = start(flaky_app, threads=2)
    try:
        assert tick(flaky_app, runtime.actors, datetime.now(UTC)) == 1
        runtime.wait()
    finally:
        runtime.close()
    assert [r for m in sink.messages for r in m.rcpt_tos] == ["grey@example.com"]
    with transaction(flaky_app.engine) as session:
        send = session.scalars(sa.select(Send)).one()
    assert send.status == SendStatus.SENT
    assert send.attempts >= 2, "the first refusal was retried"
