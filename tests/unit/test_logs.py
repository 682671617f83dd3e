"""Structured logs: every line an actor (or Dramatiq, about its message) emits carries the ids."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import logs, service
from outreach.app import App
from outreach.db import transaction
from outreach.inbound.ingest import receive
from outreach.models import Enrollment, InboundMessage, Prospect, Send
from outreach.runtime import Runtime, start
from tests.conftest import write_blast

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Captured(logging.Handler):
    """Keeps each record and the line the configured formatter made of it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def from_workers(self) -> list[tuple[logging.LogRecord, str]]:
        """The records (and lines) logged by threads other than the test's own."""
        me = threading.get_ident()
        pairs = zip(self.records, self.lines, strict=True)
        return [(record, line) for record, line in pairs if record.thread != me]


@contextmanager
def capturing(fmt: str = "logfmt") -> Iterator[Captured]:
    """Root's only handler is a Captured one, set up by `logs.configure` as a worker is."""
    root, ours = logging.getLogger(), logging.getLogger("outreach")
    saved = root.handlers[:], root.level, ours.level
    handler = Captured()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        logs.configure(logging.INFO, fmt)
        yield handler
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])


@pytest.fixture
def enrolled(app: App, workdir: Path) -> int:
    """One prospect enrolled in a one-email sequence open around the clock; its enrollment."""
    sequence = write_blast(workdir)
    with transaction(app.engine) as session:
        session.add(Prospect(email="eva@example.com", created_at=NOW, updated_at=NOW, fields={}))
    assert service.enroll_many(app, sequence, ["eva@example.com"], NOW).enrolled
    with transaction(app.engine) as session:
        enrollment_id = session.scalar(sa.select(Enrollment.id))
    assert enrollment_id is not None
    return enrollment_id


@pytest.fixture
def runtime(app: App) -> Iterator[Runtime]:
    """The app's actors on an in-process StubBroker with a running worker."""
    run = start(app, threads=1)
    yield run
    run.close()


def the_send(app: App) -> Send:
    with transaction(app.engine) as session:
        return session.scalars(sa.select(Send)).one()


def test_a_batch_send_logs_its_enrollment_step_and_send_on_every_line(
    app: App, enrolled: int, runtime: Runtime
) -> None:
    with capturing() as captured:
        assert runtime.tick(NOW, simulated=True) == 1
    send = the_send(app)
    assert str(send.status) == "sent"
    worker_lines = captured.from_workers()
    assert worker_lines, "the worker logged nothing"
    for record, line in worker_lines:
        ctx = record.ctx  # type: ignore[attr-defined]
        assert ctx["actor"] == "send_steps" and ctx["message_id"], line
        assert ctx.get("enrollment") == enrolled or ctx.get("enrollments") == [enrolled], line
        assert f"message_id={ctx['message_id']}" in line
    [(record, line)] = [(r, x) for r, x in worker_lines if r.getMessage().startswith("sent")]
    assert record.levelno == logging.INFO
    assert record.ctx["send"] == send.id  # type: ignore[attr-defined]
    assert f" enrollment={enrolled} step=1 send={send.id}" in line
    assert line.startswith("time=2") and " level=info logger=outreach.actors " in line
    assert f'msg="sent: {send.message_id}"' in line
    [summary] = [x for r, x in worker_lines if r.getMessage().startswith("batch")]
    assert f" enrollments={enrolled}" in summary and " send=" not in summary


def test_a_single_step_logs_its_ids(app: App, enrolled: int, runtime: Runtime) -> None:
    with capturing() as captured:
        runtime.actors.send_step.send(enrolled, 1, NOW.isoformat())
        runtime.wait()
    send = the_send(app)
    [(record, line)] = captured.from_workers()
    assert record.ctx["actor"] == "send_step"  # type: ignore[attr-defined]
    assert f" enrollment={enrolled} step=1 send={send.id}" in line


class ExplodingMailer:
    """A mailer with a bug: it raises what no send path expects."""

    def send(
        self, envelope_from: str, recipients: list[str], data: bytes, message_id: str
    ) -> str | None:
        raise RuntimeError("mailer exploded")

    def close(self) -> None:
        return None


def test_dramatiqs_failure_lines_carry_the_ids(app: App, enrolled: int, runtime: Runtime) -> None:
    app.mailer = ExplodingMailer()  # type: ignore[assignment]
    with capturing() as captured:
        message = runtime.actors.send_step.send_with_options(
            args=(enrolled, 1, NOW.isoformat()), max_retries=0
        )
        runtime.wait()
    failed = [(r, x) for r, x in captured.from_workers() if r.name.startswith("dramatiq")]
    levels = sorted(r.levelname for r, _ in failed)
    assert levels == ["ERROR", "WARNING"]  # the unhandled exception, then no retries left
    for record, line in failed:
        assert record.ctx == {  # type: ignore[attr-defined]
            "actor": "send_step",
            "message_id": message.message_id,
            "enrollment": enrolled,
            "step": 1,
        }
        assert f" enrollment={enrolled} step=1" in line
    [error] = [x for r, x in failed if r.levelname == "ERROR"]
    assert "\n" not in error and "mailer exploded" in error and " exc=" in error


def test_an_inbound_reply_logs_its_inbound_and_enrollment(
    app: App, enrolled: int, runtime: Runtime
) -> None:
    runtime.tick(NOW, simulated=True)
    sent = the_send(app)
    raw = (
        "From: eva@example.com\r\nTo: ann@acme.example\r\nSubject: Re: Hello\r\n"
        f"Message-ID: <answer@example.com>\r\nIn-Reply-To: {sent.message_id}\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nSounds good, call me.\r\n"
    ).encode()
    inbound_id, _ = receive(app, raw, NOW, "test")
    with capturing("json") as captured:
        runtime.actors.process_inbound.send(inbound_id, NOW.isoformat())
        runtime.wait()
    with transaction(app.engine) as session:
        row = session.get(InboundMessage, inbound_id)
        assert row is not None and row.enrollment_id == enrolled
    lines = [json.loads(x) for r, x in captured.from_workers() if r.name == "outreach.actors"]
    assert [(x["inbound"], x["enrollment"], x["actor"]) for x in lines] == [
        (inbound_id, enrolled, "process_inbound")
    ]


def test_bound_fields_nest_and_are_dropped_at_the_end_of_the_block() -> None:
    with logs.bind(enrollments=[1, 2], step=1):
        with logs.bind(enrollments=None, enrollment=2, send=9):
            assert logs.current() == {"step": 1, "enrollment": 2, "send": 9}
        assert logs.current() == {"enrollments": [1, 2], "step": 1}
    assert logs.current() == {}


def test_a_logfmt_line_quotes_what_would_split_it() -> None:
    record = logging.LogRecord("outreach.x", logging.WARNING, __file__, 1, "a b=c", None, None)
    with logs.bind(enrollment=3, detail='said "no"\nthen left', enrollments=[1, 2]):
        logs.ContextFilter().filter(record)
    line = logs.LogfmtFormatter().format(record)
    assert line.split(" ", 1)[1] == (
        'level=warning logger=outreach.x msg="a b=c" enrollment=3 '
        'detail="said \\"no\\"\\nthen left" enrollments=1,2'
    )


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(Exception, match="OUTREACH_LOG_FORMAT"):
        logs.configure(fmt="xml")
