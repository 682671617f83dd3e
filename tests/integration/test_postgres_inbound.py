"""On real PostgreSQL and a real SMTP server: a reply racing the dispatch of the next step."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import service
from outreach.app import App, build_app
from outreach.batch import run_batch
from outreach.db import transaction
from outreach.dispatch import claim_due, run_step
from outreach.inbound.ingest import ingest
from outreach.models import Enrollment, EnrollmentState, Send
from tests.conftest import make_settings, write_blast
from tests.conftest_smtp import SmtpSink

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
PEOPLE = 30


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def pg_app(workdir: Path, pg_url: str, sink: SmtpSink) -> Iterator[App]:
    write_blast(workdir, steps=2)
    settings = make_settings(
        workdir, database_url=pg_url, smtp_url=sink.url(), smtp_timeout=5, send_batch_size=5
    )
    app = build_app(settings)
    yield app
    app.close()


def reply(app: App, enrollment_id: int) -> bytes:
    with transaction(app.engine) as session:
        send = session.scalars(
            sa.select(Send).where(Send.enrollment_id == enrollment_id, Send.step == 1)
        ).one()
    msg = EmailMessage()
    msg["From"] = send.to_email
    msg["To"] = send.sender_email
    msg["Subject"] = "Re: " + send.subject
    msg["Message-ID"] = f"<reply-{enrollment_id}@client.example>"
    msg["In-Reply-To"] = send.message_id
    msg.set_content("Thanks, let us talk next week.")
    return msg.as_bytes()


def test_reply_racing_the_next_step_wins_when_it_is_in_first(pg_app: App, sink: SmtpSink) -> None:
    people = [f"p{i}@example.com" for i in range(PEOPLE)]
    service.enroll_many(pg_app, "blast", people, NOW)
    for enrollment_id, step in claim_due(pg_app.engine, NOW, 100, 600):
        run_step(pg_app, enrollment_id, step, NOW)
    assert len(sink.messages) == PEOPLE
    first_round = len(sink.messages)
    replies = {eid: reply(pg_app, eid) for eid, _ in _ids(pg_app)}

    later = NOW + timedelta(days=1, hours=1)
    claims = claim_due(pg_app.engine, later, 100, 600)
    assert {step for _e, step in claims} == {2}
    sink.hang["DATA"] = 0.05  # each step-2 message takes a while: the replies catch up
    started = threading.Event()
    finished_at: dict[int, float] = {}

    def worker() -> None:
        app = build_app(pg_app.settings)
        started.set()
        run_batch(app, sorted(claims), later)
        app.close()

    def replier() -> None:
        app = build_app(pg_app.settings)
        while len(sink.messages) == first_round:
            time.sleep(0.005)
        for enrollment_id in sorted(replies, reverse=True):  # against the batch's order
            ingest(app, replies[enrollment_id], later, source="race")
            finished_at[enrollment_id] = time.monotonic()
        app.close()

    threads = [threading.Thread(target=worker), threading.Thread(target=replier)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    second = sink.messages[first_round:]
    by_person = {m.rcpt_tos[0]: m for m in second}
    assert len(by_person) == len(second), "no step went out twice"
    ids = dict((email_, eid) for eid, email_ in _ids(pg_app))
    for person, message in by_person.items():
        # a step-2 message went out only if its send began before the reply was in
        assert message.at < finished_at[ids[person]]
    assert 0 < len(second) < PEOPLE, "the race was run: some steps went out, some did not"
    with transaction(pg_app.engine) as session:
        states = list(session.scalars(sa.select(Enrollment.state)))
    # those whose last step went out had finished when the reply came; the rest stopped
    assert states.count(EnrollmentState.FINISHED) == len(second)
    assert states.count(EnrollmentState.REPLIED) == PEOPLE - len(second)


def _ids(app: App) -> list[tuple[int, str]]:
    from outreach.models import Prospect

    with transaction(app.engine) as session:
        return [
            (eid, addr)
            for eid, addr in session.execute(
                sa.select(Enrollment.id, Prospect.email).join(Prospect)
            )
        ]


def test_a_reply_while_a_worker_holds_the_rows_waits_and_never_deadlocks(
    pg_app: App, workdir: Path
) -> None:
    from tests.conftest import write_sequence

    # Eva is in two non-exclusive sequences: enrollments 1 and 2
    write_sequence(
        workdir,
        "second",
        'name: Second\nexclusive: false\nsender: {from: "Bo <bo@acme.example>", address: "Acme"}\n'
        'schedule: {timezone: UTC, window: "00:00-24:00",'
        " days: [mon, tue, wed, thu, fri, sat, sun]}\n"
        "steps:\n  - email: {template: hello}\n",
    )
    blast = (workdir / "sequences" / "blast.yaml").read_text()
    (workdir / "sequences" / "blast.yaml").write_text("exclusive: false\n" + blast)
    service.enroll_many(pg_app, "blast", ["eva@example.com"], NOW)
    service.enroll_many(pg_app, "second", ["eva@example.com"], NOW)
    for enrollment_id, step in claim_due(pg_app.engine, NOW, 10, 600):
        run_step(pg_app, enrollment_id, step, NOW)
    [(low, _), (high, _)] = sorted(_ids(pg_app))
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        # as a batch does: lock the rows in id order, with a pause between
        try:
            with pg_app.engine.begin() as connection:
                lock = "SELECT id FROM enrollment WHERE id = :id FOR UPDATE"
                connection.execute(sa.text(lock), {"id": low})
                holding.set()
                release.wait(5)
                connection.execute(sa.text(lock), {"id": high})
        except BaseException as exc:
            errors.append(exc)

    def replier() -> None:
        try:
            holding.wait(5)
            threading.Timer(0.5, release.set).start()
            ingest(pg_app, reply(pg_app, high), NOW, source="race")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker), threading.Thread(target=replier)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with transaction(pg_app.engine) as session:
        rows = session.execute(sa.select(Enrollment.sequence_id, Enrollment.state)).all()
        states = {sequence: state for sequence, state in rows}
    # "second" had sent its one step and finished; "blast" stopped at the reply
    assert states == {"blast": EnrollmentState.REPLIED, "second": EnrollmentState.FINISHED}
