"""Real `outreach worker` processes on Redis and PostgreSQL, SIGKILLed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import service
from outreach.app import App, build_app
from outreach.db import transaction
from outreach.models import Enrollment, EnrollmentState, Send, SendStatus
from outreach.runtime import start
from tests.conftest import make_settings, write_blast
from tests.conftest_smtp import SmtpSink

# short leases so the test sees recovery; small batches so kills cut through several
FAST = {"dispatch_lease_seconds": 3, "send_inflight_seconds": 4, "send_batch_size": 10}


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def stack(workdir: Path, pg_url: str, redis_url: str, sink: SmtpSink) -> Iterator[App]:
    write_blast(workdir)
    settings = make_settings(
        workdir, database_url=pg_url, broker_url=redis_url, smtp_url=sink.url(), **FAST
    )
    app = build_app(settings)
    yield app
    app.close()


def worker_env(app: App) -> dict[str, str]:
    s = app.settings
    env = dict(os.environ)
    env.update(
        OUTREACH_DATABASE_URL=s.database_url,
        OUTREACH_BROKER_URL=s.broker_url or "",
        OUTREACH_SMTP_URL=s.smtp_url or "",
        OUTREACH_SEQUENCES_DIR=str(s.sequences_dir),
        OUTREACH_TEMPLATES_DIR=str(s.templates_dir),
        OUTREACH_SECRET_KEY=s.secret_key or "",
        OUTREACH_DISPATCH_LEASE_SECONDS=str(s.dispatch_lease_seconds),
        OUTREACH_SEND_INFLIGHT_SECONDS=str(s.send_inflight_seconds),
        OUTREACH_SEND_BATCH_SIZE=str(s.send_batch_size),
    )
    return env


def start_worker(app: App, cwd: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "outreach", "worker", "--processes", "1", "--threads", "4"]
    return subprocess.Popen(
        command,
        env=worker_env(app),
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def states(app: App) -> Counter[str]:
    with transaction(app.engine) as session:
        rows = session.scalars(sa.select(Enrollment.state))
        return Counter(str(s) for s in rows)


def drive(app: App, until: float, done: callable) -> None:  # type: ignore[valid-type]
    runtime = start(app)
    try:
        while time.monotonic() < until and not done():
            runtime.tick(datetime.now(UTC))
            time.sleep(0.3)
    finally:
        runtime.close()


def test_worker_process_sends_enqueued_steps(stack: App, sink: SmtpSink, workdir: Path) -> None:
    people = [f"w{i}@example.com" for i in range(30)]
    service.enroll_many(stack, "blast", people, datetime.now(UTC))
    worker = start_worker(stack, workdir)
    try:
        drive(stack, time.monotonic() + 60, lambda: states(stack)["finished"] == len(people))
    finally:
        kill(worker)
    assert states(stack) == Counter({"finished": len(people)})
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == sorted(people)


def test_sigkilled_worker_leaves_no_duplicate_and_no_silent_loss(
    stack: App, sink: SmtpSink, workdir: Path
) -> None:
    people = [f"k{i}@example.com" for i in range(200)]
    service.enroll_many(stack, "blast", people, datetime.now(UTC))
    sink.hang["DATA"] = 0.02  # slow enough that kills land mid-send
    worker = start_worker(stack, workdir)
    deadline = time.monotonic() + 120
    try:
        for _ in range(3):
            # kill only once this worker is visibly sending, whatever its start-up time
            before = len(sink.messages)
            drive(stack, time.monotonic() + 30, lambda b=before: len(sink.messages) >= b + 5)
            kill(worker)
            worker = start_worker(stack, workdir)
        sink.hang.clear()
        drive(stack, deadline, lambda: states(stack)["active"] == 0)
    finally:
        kill(worker)
    received = Counter(r for m in sink.messages for r in m.rcpt_tos)
    assert len(received) >= 15, "the workers were sending when they were killed"
    assert max(received.values()) == 1, "nobody was mailed twice"
    with transaction(stack.engine) as session:
        ledger = {s.to_email: s.status for s in session.scalars(sa.select(Send))}
        by_state = Counter(str(e.state) for e in session.scalars(sa.select(Enrollment)))
    assert by_state["active"] == 0, "every enrollment reached a visible outcome"
    for person in people:
        status = ledger.get(person)
        if status == SendStatus.SENT:
            assert received[person] == 1
        else:
            # visibly unknown (paused for a person to decide), never silently dropped
            assert status == SendStatus.UNKNOWN, (person, status)
    assert by_state["finished"] + by_state["paused"] == len(people)
    assert by_state["paused"] == sum(1 for s in ledger.values() if s == SendStatus.UNKNOWN)
    _ = EnrollmentState
