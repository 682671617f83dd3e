"""The send path on SQLite and the outbox: at most once, stops win, limits defer."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import dispatch, ledger, service
from outreach.app import App
from outreach.db import transaction
from outreach.dispatch import Prepared, claim_due, run_step
from outreach.models import Enrollment, EnrollmentState, Event, Prospect, Send, SendStatus
from outreach.runtime import start
from tests.conftest import add_prospect, outbox, write_sequence, write_template

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm


@pytest.fixture
def simple(app: App, workdir: Path) -> str:
    """A two-email sequence open around the clock, in UTC."""
    write_template(workdir, "hello", "Hi {{ prospect.first_name }} at {{ prospect.company }}\n")
    write_template(workdir, "again", "Just checking in, {{ prospect.first_name }}.\n", subject=None)
    write_sequence(
        workdir,
        "simple",
        """
        name: Simple
        sender:
          from: "Ann Rep <ann@acme.example>"
          address: "Acme AB, Box 1, 111 22 Stockholm"
        schedule:
          timezone: UTC
          window: "00:00-24:00"
          days: [mon, tue, wed, thu, fri, sat, sun]
        steps:
          - email:
              template: hello
          - wait: 1 day
          - email:
              template: again
              thread: true
        """,
    )
    return "simple"


def enrollment_of(app: App, email_: str) -> Enrollment:
    with transaction(app.engine) as session:
        return session.scalars(
            sa.select(Enrollment).join(Prospect).where(Prospect.email == email_)
        ).one()


def test_two_steps_go_out_once_each_and_thread(app: App, simple: str) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva", company="Volvo")
    assert service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9).enrolled
    runtime = start(app, threads=2)
    try:
        for hours in range(0, 60, 6):
            runtime.tick(MONDAY_9 + timedelta(hours=hours), simulated=True)
    finally:
        runtime.close()
    first, second = outbox(app)
    assert first["Subject"] == "Hello"
    assert "Hi Eva at Volvo" in first.get_body(("plain",)).get_content()
    assert second["Subject"] == "Re: Hello"
    assert second["In-Reply-To"] == first["Message-ID"]
    assert enrollment_of(app, "eva@example.com").state == EnrollmentState.FINISHED


def test_same_message_delivered_twice_sends_once(app: App, simple: str) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva", company="Volvo")
    service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    runtime = start(app, threads=4)
    try:
        [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
        for _ in range(2):
            runtime.actors.send_step.send_with_options(
                args=(enrollment_id, step, MONDAY_9.isoformat()), max_retries=0
            )
        runtime.wait()
    finally:
        runtime.close()
    assert len(outbox(app)) == 1


def test_stop_between_dispatch_and_send_wins(app: App, simple: str) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva", company="Volvo")
    service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    service.stop(app, "eva@example.com", MONDAY_9)
    outcome = run_step(app, enrollment_id, step, MONDAY_9)
    assert outcome.status == "skipped"
    assert outbox(app) == []


def test_suppressed_address_is_never_mailed(app: App, simple: str) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva", company="Volvo")
    service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    with transaction(app.engine) as session:
        from outreach.models import Suppression

        session.add(Suppression(email="eva@example.com", reason="complaint", created_at=MONDAY_9))
    assert run_step(app, enrollment_id, step, MONDAY_9).status == "skipped"
    report = service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    assert report.refused == [("eva@example.com", "eva@example.com is suppressed")]
    assert outbox(app) == []


def test_missing_variable_pauses_then_resume_sends(app: App, simple: str) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva")
    service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    assert run_step(app, enrollment_id, step, MONDAY_9).status == "paused"
    paused = enrollment_of(app, "eva@example.com")
    assert (paused.state, paused.reason) == (EnrollmentState.PAUSED, "missing prospect.company")
    assert outbox(app) == []
    with transaction(app.engine) as session:
        session.scalars(sa.select(Prospect)).one().company = "Volvo"
    service.resume(app, "eva@example.com", MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    assert run_step(app, enrollment_id, step, MONDAY_9).status == "sent"
    assert len(outbox(app)) == 1


def test_cut_off_send_becomes_unknown_and_is_never_resent(app: App, simple: str) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva", company="Volvo")
    service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    from outreach.dispatch import prepare

    prepared = prepare(app, enrollment_id, step, MONDAY_9)
    assert isinstance(prepared, Prepared)
    assert ledger.hand(app.engine, [prepared.send_id])  # handed to SMTP, then the worker "dies"
    soon = MONDAY_9 + timedelta(seconds=30)
    assert run_step(app, enrollment_id, step, soon).detail == "send in flight"
    later = MONDAY_9 + timedelta(seconds=app.settings.send_inflight_seconds + 1)
    assert run_step(app, enrollment_id, step, later).status == "unknown"
    assert outbox(app) == []
    with transaction(app.engine) as session:
        send = session.scalars(sa.select(Send)).one()
        assert send.status == SendStatus.UNKNOWN
        types = [e.type for e in session.scalars(sa.select(Event))]
    assert "failed" in types
    assert enrollment_of(app, "eva@example.com").state == EnrollmentState.PAUSED
    service.resume(app, "eva@example.com", later)
    resumed = enrollment_of(app, "eva@example.com")
    assert resumed.step == 2
    # step 1 may have reached Eva at 09:00 Monday: step 2 still waits its day
    assert resumed.next_run_at == MONDAY_9 + timedelta(days=1)


def test_send_cut_off_before_it_was_handed_over_is_sent_once_later(app: App, simple: str) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva", company="Volvo")
    service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    from outreach.dispatch import prepare

    prepare(app, enrollment_id, step, MONDAY_9)  # reserved, then the worker "dies"
    soon = MONDAY_9 + timedelta(seconds=30)
    assert run_step(app, enrollment_id, step, soon).detail == "send in flight"
    later = MONDAY_9 + timedelta(seconds=app.settings.send_inflight_seconds + 1)
    assert run_step(app, enrollment_id, step, later).status == "sent"
    assert len(outbox(app)) == 1
    with transaction(app.engine) as session:
        send = session.scalars(sa.select(Send)).one()
    assert (send.status, send.attempts, send.handed) == (SendStatus.SENT, 2, True)


def test_a_slow_worker_and_the_one_taking_over_hand_the_send_over_once(
    app: App, simple: str
) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva", company="Volvo")
    service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    from outreach.dispatch import deliver, prepare

    slow = prepare(app, enrollment_id, step, MONDAY_9)
    later = MONDAY_9 + timedelta(seconds=app.settings.send_inflight_seconds + 1)
    taking_over = prepare(app, enrollment_id, step, later)
    assert isinstance(slow, Prepared) and isinstance(taking_over, Prepared)
    assert slow.send_id == taking_over.send_id
    assert deliver(app, slow, later).status == "sent"
    assert deliver(app, taking_over, later).detail == dispatch.TAKEN_OVER
    assert len(outbox(app)) == 1


def test_daily_limit_defers_and_never_skips(app: App, workdir: Path) -> None:
    write_template(workdir, "hello", "Hi {{ prospect.first_name | default('there') }}\n")
    write_sequence(
        workdir,
        "limited",
        """
        name: Limited
        sender:
          from: ["Ann <ann@acme.example>", "Bo <bo@acme.example>"]
          address: "Acme AB, Box 1, 111 22 Stockholm"
        schedule:
          timezone: UTC
          window: "00:00-24:00"
          days: [mon, tue, wed, thu, fri, sat, sun]
          daily_limit: 2
        steps:
          - email:
              template: hello
        """,
    )
    people = [f"p{i}@example.com" for i in range(6)]
    report = service.enroll_many(app, "limited", people, MONDAY_9)
    assert len(report.enrolled) == 6
    senders = [enrollment_of(app, p).sender for p in people]
    assert senders.count("Ann <ann@acme.example>") == 3  # rotation spreads
    runtime = start(app, threads=1)
    try:
        runtime.tick(MONDAY_9, simulated=True)
        assert len(outbox(app)) == 4  # two per sender today
        runtime.tick(MONDAY_9 + timedelta(hours=23), simulated=True)
        assert len(outbox(app)) == 4
        runtime.tick(MONDAY_9 + timedelta(hours=24, minutes=1), simulated=True)
    finally:
        runtime.close()
    assert len(outbox(app)) == 6
    assert sorted(m["To"] for m in outbox(app)) == sorted(people)


def test_edited_sequence_keeps_running_enrollments(app: App, simple: str, workdir: Path) -> None:
    add_prospect(app, "eva@example.com", first_name="Eva", company="Volvo")
    service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9)
    runtime = start(app, threads=1)
    try:
        runtime.tick(MONDAY_9, simulated=True)
        # marketing rewrites the sequence and deletes the follow-up template mid-flight
        (workdir / "templates" / "again.j2").unlink()
        write_sequence(
            workdir,
            "simple",
            """
            name: Simple v2
            sender:
              from: "Ann Rep <ann@acme.example>"
              address: "Acme AB"
            steps:
              - email:
                  template: hello
            """,
        )
        runtime.tick(MONDAY_9 + timedelta(days=1, hours=1), simulated=True)
    finally:
        runtime.close()
    messages = outbox(app)
    assert [m["Subject"] for m in messages] == ["Hello", "Re: Hello"]
    assert "Just checking in, Eva." in messages[1].get_body(("plain",)).get_content()


def test_header_injection_through_prospect_data_is_harmless(app: App, simple: str) -> None:
    add_prospect(app, "eve@example.com", first_name="Eve\r\nBcc: x@evil.example", company="X\r\nY")
    service.enroll_many(app, simple, ["eve@example.com"], MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    assert run_step(app, enrollment_id, step, MONDAY_9).status == "sent"
    [message] = outbox(app)
    assert message["Bcc"] is None
    assert message.get_all("To") == [message["To"]]
    assert "x@evil.example" not in str(message["To"]).split("<")[-1]


def test_dkim_signs_the_whole_path_including_unsubscribe_headers(
    workdir: Path, simple: str, app: App
) -> None:
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from outreach.app import build_app
    from tests.conftest import make_settings
    from tests.unit.test_message import dns_for

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = workdir / "dkim.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signed = build_app(make_settings(workdir, dkim_key_file=pem, dkim_selector="s1"))
    add_prospect(signed, "eva@example.com", first_name="Eva", company="Volvo")
    service.enroll_many(signed, simple, ["eva@example.com"], MONDAY_9)
    [(enrollment_id, step)] = claim_due(signed.engine, MONDAY_9, 10, 600)
    assert run_step(signed, enrollment_id, step, MONDAY_9).status == "sent"
    [path] = sorted(signed.settings.outbox_dir.glob("*.eml"))
    data = path.read_bytes()
    assert dkim.verify(data, dnsfunc=dns_for(key))
    signature = email.message_from_bytes(data, policy=policy.default)["DKIM-Signature"]
    covered = signature.replace(" ", "").split("h=")[1].split(";")[0].lower().split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(covered)
    signed.close()


def test_exclusive_sequences_refuse_a_second_enrollment(
    app: App, simple: str, workdir: Path
) -> None:
    write_sequence(
        workdir,
        "other",
        """
        name: Other
        sender: {from: "Bo <bo@acme.example>", address: "Acme AB"}
        steps:
          - email: {template: hello}
        """,
    )
    write_sequence(
        workdir,
        "newsletter",
        """
        name: Newsletter
        exclusive: false
        sender: {from: "Bo <bo@acme.example>", address: "Acme AB"}
        steps:
          - email: {template: hello}
        """,
    )
    assert service.enroll_many(app, simple, ["eva@example.com"], MONDAY_9).enrolled
    refused = service.enroll_many(app, "other", ["eva@example.com"], MONDAY_9).refused
    assert refused == [
        ("eva@example.com", "eva@example.com is already in exclusive sequence simple")
    ]
    assert service.enroll_many(app, "newsletter", ["eva@example.com"], MONDAY_9).enrolled
