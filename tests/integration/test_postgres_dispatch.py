"""On real PostgreSQL and a real SMTP server: concurrent schedulers, 4xx retries, 5xx failures."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import service
from outreach.app import App, build_app
from outreach.db import transaction
from outreach.dispatch import claim_due, run_step
from outreach.errors import TransientSendError
from outreach.models import Enrollment, EnrollmentState, Send, SendStatus
from tests.conftest import make_settings, write_blast, write_sequence, write_template
from tests.conftest_smtp import SmtpSink

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def pg_app(workdir: Path, pg_url: str, sink: SmtpSink) -> Iterator[App]:
    write_blast(workdir)
    app = build_app(
        make_settings(workdir, database_url=pg_url, smtp_url=sink.url(), smtp_timeout=5)
    )
    yield app
    app.close()


def enroll(app: App, count: int) -> list[str]:
    people = [f"p{i}@example.com" for i in range(count)]
    assert len(service.enroll_many(app, "blast", people, NOW).enrolled) == count
    return people


def test_two_schedulers_at_once_send_each_step_once(pg_app: App, sink: SmtpSink) -> None:
    people = enroll(pg_app, 120)
    barrier = threading.Barrier(2)
    claimed: list[list[tuple[int, int]]] = [[], []]

    def scheduler(index: int) -> None:
        app = build_app(pg_app.settings)
        barrier.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = claim_due(app.engine, NOW, 7, 600)
            if not batch:
                # the other scheduler may hold the candidates right now: done only when
                # every step has a ledger row
                if _sent(app) == len(people):
                    break
                time.sleep(0.01)
                continue
            claimed[index] += batch
            for enrollment_id, step in batch:
                run_step(app, enrollment_id, step, NOW)
        app.close()

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert claimed[0] and claimed[1], "both schedulers took part"
    assert not set(claimed[0]) & set(claimed[1])
    recipients = Counter(rcpt for m in sink.messages for rcpt in m.rcpt_tos)
    assert sorted(recipients) == sorted(people)
    assert set(recipients.values()) == {1}


def _sent(app: App) -> int:
    with transaction(app.engine) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Send)) or 0)


def test_4xx_is_retried_and_5xx_fails_with_the_answer(pg_app: App, sink: SmtpSink) -> None:
    enroll(pg_app, 2)
    claims = dict(claim_due(pg_app.engine, NOW, 10, 600))
    first, second = sorted(claims)
    sink.replies["RCPT"] = "451 4.7.1 Greylisted, try again"
    with pytest.raises(TransientSendError):
        run_step(pg_app, first, 1, NOW)
    with transaction(pg_app.engine) as session:
        send = session.scalars(sa.select(Send).where(Send.enrollment_id == first)).one()
        assert (send.status, send.code) == (SendStatus.DEFERRED, 451)
        retry_at = session.get(Enrollment, first).next_run_at  # type: ignore[union-attr]
    assert retry_at is not None and retry_at > NOW
    del sink.replies["RCPT"]
    later = NOW + timedelta(minutes=5)
    assert run_step(pg_app, first, 1, later).status == "sent"
    sink.refuse["p1@example.com"] = "550 5.1.1 <p1@example.com>: Recipient address rejected"
    sink.refuse["p0@example.com"] = sink.refuse["p1@example.com"]
    outcome = run_step(pg_app, second, 1, later)
    assert outcome.status == "failed"
    with transaction(pg_app.engine) as session:
        send = session.scalars(sa.select(Send).where(Send.enrollment_id == second)).one()
        enrollment = session.get(Enrollment, second)
    assert send.status == SendStatus.FAILED and send.code == 550
    assert "Recipient address rejected" in (send.error or "")
    assert enrollment is not None and enrollment.state == EnrollmentState.FAILED
    assert len(sink.messages) == 1


def test_first_enrollments_at_once_store_one_version_and_rotate(workdir: Path, pg_url: str) -> None:
    from outreach.models import SequenceVersion

    settings = make_settings(workdir, database_url=pg_url)
    apps = [build_app(settings) for _ in range(6)]
    barrier = threading.Barrier(6)
    reports = []

    def enroll_one(index: int) -> None:
        barrier.wait()
        people = [f"x{index}@example.com"]
        reports.append(service.enroll_many(apps[index], "cold_outbound", people, NOW))

    threads = [threading.Thread(target=enroll_one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.enrolled and not r.refused for r in reports)
    with transaction(apps[0].engine) as session:
        versions = session.scalars(sa.select(SequenceVersion)).all()
        senders = Counter(session.scalars(sa.select(Enrollment.sender)))
    assert len(versions) == 1
    assert sorted(senders.values()) == [3, 3]
    for app in apps:
        app.close()


def test_unsubscribe_before_smtp_wins_in_a_batch(pg_app: App, sink: SmtpSink) -> None:
    from outreach import fastpath
    from outreach.batch import _send_locked

    enroll(pg_app, 3)
    claims = claim_due(pg_app.engine, NOW, 10, 600)
    with transaction(pg_app.engine) as session:
        ready, left = fastpath.prepare_many(pg_app, session, claims, NOW)
    assert len(ready) == 3 and not left
    service.unsubscribe(pg_app, "p1@example.com", NOW)  # reserved, not yet sent
    outcomes = sorted(o.status for _claim, o in _send_locked(pg_app, ready, NOW, set()))
    assert outcomes == ["sent", "sent", "skipped"]
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == [
        "p0@example.com",
        "p2@example.com",
    ]
    with transaction(pg_app.engine) as session:
        statuses = {s.to_email: str(s.status) for s in session.scalars(sa.select(Send))}
    assert statuses["p1@example.com"] == "deferred"


class StopDuringSmtp:
    """Delivers through the real mailer; during the first send a rep stops another prospect."""

    def __init__(self, app: App, victim: str) -> None:
        self.app, self.victim, self.inner = app, victim, app.mailer
        self.stopper: threading.Thread | None = None

    def send(
        self, envelope_from: str, recipients: list[str], data: bytes, message_id: str
    ) -> str | None:
        if self.stopper is None:
            self.stopper = threading.Thread(target=service.stop, args=(self.app, self.victim, NOW))
            self.stopper.start()
        return self.inner.send(envelope_from, recipients, data, message_id)

    def close(self) -> None:
        self.inner.close()


def test_a_stop_during_the_batch_waits_for_it_then_holds(
    workdir: Path, pg_url: str, sink: SmtpSink
) -> None:
    from outreach.batch import run_batch

    write_template(workdir, "hello", "Hi {{ prospect.email }}\n")
    write_sequence(
        workdir,
        "two",
        """
        name: Two
        sender: {from: "Ann <ann@acme.example>", address: "Acme AB"}
        schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}
        steps:
          - email: {template: hello}
          - wait: 1 day
          - email: {template: hello}
        """,
    )
    app = build_app(make_settings(workdir, database_url=pg_url, smtp_url=sink.url()))
    service.enroll_many(app, "two", ["a@example.com", "b@example.com"], NOW)
    hook = StopDuringSmtp(app, "b@example.com")
    app.mailer = hook  # type: ignore[assignment]
    run_batch(app, claim_due(app.engine, NOW, 10, 600), NOW)
    assert hook.stopper is not None
    hook.stopper.join(timeout=30)
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == [
        "a@example.com",
        "b@example.com",
    ]
    with transaction(app.engine) as session:
        rows = session.execute(sa.select(Enrollment.step, Enrollment.state).order_by(Enrollment.id))
        assert [(step, str(state)) for step, state in rows] == [(2, "active"), (2, "stopped")]
    app.close()


def test_a_large_claimed_backlog_does_not_exhaust_locks(pg_app: App) -> None:
    """Passes while 20,000 claimed steps wait for workers must neither fail nor re-claim."""
    from outreach.claims import Claimer

    with pg_app.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO sequenceversion (sequence_id, content_hash, snapshot, created_at)"
                " VALUES ('blast', 'x', '{}', now())"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO prospect (email, fields, score, created_at, updated_at)"
                " SELECT 'b' || g || '@example.com', '{}', 0, now(), now()"
                " FROM generate_series(1, 20000) g"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO enrollment (prospect_id, sequence_id, version_id, state, step,"
                " next_run_at, sender, exclusive, enrolled_at, updated_at)"
                " SELECT id, 'blast', 1, 'active', 1, :due, 'Ann <ann@acme.example>', true,"
                " now(), now() FROM prospect"
            ),
            {"due": NOW},
        )
    first = Claimer(pg_app.engine, NOW, 600)
    claimed = 0
    while batch := first.next(500):
        claimed += len(batch)
    assert claimed == 20000
    later = NOW + timedelta(seconds=30)
    for _ in range(3):  # workers are behind: every pass finds the same claimed backlog
        assert Claimer(pg_app.engine, later, 600).next(500) == []
