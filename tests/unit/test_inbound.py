"""Inbound mail end to end on SQLite: what replies, bounces, auto-replies and complaints do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from outreach import calls, reports, service
from outreach.app import App
from outreach.db import transaction
from outreach.dispatch import claim_due
from outreach.inbound.ingest import ingest
from outreach.models import (
    CallTask,
    Enrollment,
    EnrollmentState,
    Event,
    EventType,
    InboundMessage,
    Prospect,
    Suppression,
)
from outreach.runtime import start
from tests.conftest import add_prospect, outbox, write_sequence, write_template
from tests.conftest import run_ticks as run

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _sequence_yaml(sequence_id: str, extra: str = "") -> str:
    return f"""
        name: {sequence_id}
        sender:
          from: "Ann Rep <ann@acme.example>"
          address: "Acme AB, Box 1, 111 22 Stockholm"
        schedule:
          timezone: UTC
          window: "09:00-17:00"
          days: [mon, tue, wed, thu, fri]
        {extra}
        steps:
          - email:
              template: hello
          - wait: 2 days
          - email:
              template: again
              thread: true
          - wait: 2 days
          - email:
              template: again
              thread: true
        """


@pytest.fixture
def seq(app: App, workdir: Path) -> str:
    """Three emails two days apart, weekdays 09-17 UTC, default stop_on and on_auto_reply."""
    write_template(workdir, "hello", "Hi {{ prospect.first_name }}, a quick question.\n")
    write_template(workdir, "again", "Following up, {{ prospect.first_name }}.\n", subject=None)
    write_sequence(workdir, "seq", _sequence_yaml("seq"))
    return "seq"


def add(app: App, address: str, **values: str) -> None:
    add_prospect(app, address, **{"first_name": "Eva", **values})


def sent_to(app: App, address: str) -> list[EmailMessage]:
    return [m for m in outbox(app) if address in str(m["To"])]


def enrollment(app: App, address: str, sequence_id: str = "seq") -> Enrollment:
    with transaction(app.engine) as session:
        return session.scalars(
            sa.select(Enrollment)
            .join(Prospect)
            .where(Prospect.email == address, Enrollment.sequence_id == sequence_id)
        ).one()


def events_of(app: App, address: str, type_: EventType) -> list[Event]:
    with transaction(app.engine) as session:
        return list(
            session.scalars(
                sa.select(Event)
                .join(Prospect)
                .where(Prospect.email == address, Event.type == type_)
                .order_by(Event.id)  # type: ignore[arg-type]
            )
        )


def reply_to(sent: EmailMessage, body: str, *, sender: str | None = None, **headers: str) -> bytes:
    """A person's answer to a message we sent, threaded the way mail clients do."""
    msg = EmailMessage()
    msg["From"] = sender or str(sent["To"])
    msg["To"] = str(sent["From"])
    msg["Subject"] = "Re: " + str(sent["Subject"])
    msg["Date"] = "Tue, 03 Mar 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<r{abs(hash(body)) % 10**8}@client.example>"
    msg["In-Reply-To"] = str(sent["Message-ID"])
    msg["References"] = str(sent["Message-ID"])
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    quoted = "\n".join("> " + line for line in sent.get_body(("plain",)).get_content().splitlines())
    msg.set_content(f"{body}\n\nOn Mon, 2 Mar 2026 at 09:00, Ann Rep wrote:\n{quoted}\n")
    return msg.as_bytes()


def dsn(sent: EmailMessage, status: str, diagnostic: str, action: str = "failed") -> bytes:
    """An RFC 3464 report for a message we sent, carrying its headers."""
    rcpt = str(sent["To"]).split("<")[-1].rstrip(">")
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        f"To: {sent['From']}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Tue, 03 Mar 2026 10:00:00 +0000\r\n"
        f"Message-ID: <dsn{abs(hash(status + diagnostic)) % 10**8}@mx.example.com>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\n"
        f"Your message could not be delivered to {rcpt}.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {sent['From']}\r\nTo: {sent['To']}\r\nSubject: {sent['Subject']}\r\n"
        f"Message-ID: {sent['Message-ID']}\r\n\r\n"
        "--B--\r\n"
    ).encode()


def out_of_office(
    sent: EmailMessage, body: str, subject: str = "Out of Office", sender: str | None = None
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender or str(sent["To"])
    msg["To"] = str(sent["From"])
    msg["Subject"] = f"{subject}: {sent['Subject']}"
    msg["Date"] = "Mon, 02 Mar 2026 09:01:00 +0000"
    msg["Message-ID"] = "<ooo1@client.example>"
    msg["In-Reply-To"] = str(sent["Message-ID"])
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(body)
    return msg.as_bytes()


@pytest.fixture
def eva(app: App, seq: str) -> EmailMessage:
    """Eva enrolled; her first email sent on Monday at 9."""
    add(app, "eva@volvo.example", company="Volvo")
    service.enroll_many(app, seq, ["eva@volvo.example"], MONDAY_9)
    run(app, MONDAY_9)
    [first] = sent_to(app, "eva@volvo.example")
    return first


def test_reply_stops_the_sequence_and_scores(app: App, eva: EmailMessage) -> None:
    result = ingest(app, reply_to(eva, "Thanks, what does it cost?"), MONDAY_9 + timedelta(hours=2))
    assert (result.kind, result.status, result.match) == ("reply", "processed", "in_reply_to")
    assert result.step == 1
    after = enrollment(app, "eva@volvo.example")
    assert after.state == EnrollmentState.REPLIED
    run(app, MONDAY_9 + timedelta(days=3), MONDAY_9 + timedelta(days=7))
    assert len(sent_to(app, "eva@volvo.example")) == 1
    [replied] = events_of(app, "eva@volvo.example", EventType.REPLIED)
    assert replied.step == 1
    assert replied.data["text"].startswith("Thanks, what does it cost?")
    assert (
        "Following up" not in replied.data["text"] and "quick question" not in replied.data["text"]
    )
    with transaction(app.engine) as session:
        assert session.scalars(sa.select(Prospect)).one().score == 10


def test_the_same_message_ingested_twice_has_its_effect_once(app: App, eva: EmailMessage) -> None:
    raw = reply_to(eva, "Sounds interesting, can we schedule a call next week?")
    first = ingest(app, raw, MONDAY_9 + timedelta(hours=2))
    second = ingest(app, raw, MONDAY_9 + timedelta(hours=3))
    assert not first.duplicate and second.duplicate and second.id == first.id
    assert len(events_of(app, "eva@volvo.example", EventType.REPLIED)) == 1
    with transaction(app.engine) as session:
        assert session.scalars(sa.select(Prospect)).one().score == 10
        assert session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(CallTask)) == 1


def test_reply_ingested_after_claim_before_send_stops_the_step(app: App, eva: EmailMessage) -> None:
    # step 2 is due Wednesday: the scheduler has claimed it and queued it for a worker
    wednesday = MONDAY_9 + timedelta(days=2, hours=1)
    [(enrollment_id, step)] = claim_due(app.engine, wednesday, 10, 600)
    assert step == 2
    ingest(app, reply_to(eva, "Not now, maybe later."), wednesday)
    runtime = start(app, threads=2)
    try:
        runtime.actors.send_steps.send_with_options(
            args=([[enrollment_id, step]], wednesday.isoformat()), max_retries=0
        )
        runtime.wait()
    finally:
        runtime.close()
    assert len(sent_to(app, "eva@volvo.example")) == 1


def test_quoting_our_unsubscribe_footer_is_a_reply(app: App, eva: EmailMessage) -> None:
    footer = eva.get_body(("plain",)).get_content()
    assert "Unsubscribe:" in footer
    result = ingest(app, reply_to(eva, "Happy to chat on Thursday."), MONDAY_9 + timedelta(hours=1))
    assert result.kind == "reply"
    with transaction(app.engine) as session:
        assert session.get(Suppression, "eva@volvo.example") is None
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.REPLIED


def test_remove_me_suppresses_and_ends_everything(app: App, eva: EmailMessage) -> None:
    result = ingest(app, reply_to(eva, "Please remove me from your list."), MONDAY_9)
    assert result.kind == "unsubscribe"
    with transaction(app.engine) as session:
        assert session.get(Suppression, "eva@volvo.example") is not None
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.UNSUBSCRIBED
    [event] = events_of(app, "eva@volvo.example", EventType.UNSUBSCRIBED)
    assert (event.sequence_id, event.step) == ("seq", 1)


def test_hard_bounce_suppresses_and_ends_every_enrollment(
    app: App, eva: EmailMessage, workdir: Path
) -> None:
    write_sequence(workdir, "other", _sequence_yaml("other", "exclusive: false"))
    service.enroll_many(app, "other", ["eva@volvo.example"], MONDAY_9)
    result = ingest(app, dsn(eva, "5.1.1", "550 5.1.1 <eva@volvo.example>: User unknown"), MONDAY_9)
    assert (result.kind, result.match) == ("bounce", "bounce_original")
    with transaction(app.engine) as session:
        assert session.get(Suppression, "eva@volvo.example") is not None
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.BOUNCED
    assert enrollment(app, "eva@volvo.example", "other").state == EnrollmentState.BOUNCED
    stats = {(r["sequence"], r["step"]): r for r in reports_stats(app)}
    assert stats[("seq", 1)]["bounced"] == 1


def reports_stats(app: App) -> list[dict[str, object]]:
    with transaction(app.engine) as session:
        return reports.stats(session)


@pytest.fixture
def daily(app: App, workdir: Path) -> str:
    """Six emails a day apart, any hour: "daily"."""
    write_template(workdir, "hello", "Hi {{ prospect.first_name }}, a quick question.\n")
    steps = "\n".join(
        ["  - email: {template: hello}", *["  - wait: 1 day\n  - email: {template: hello}"] * 5]
    )
    write_sequence(
        workdir,
        "daily",
        'name: Daily\nsender: {from: "Ann <ann@acme.example>", address: "Acme AB"}\n'
        'schedule: {timezone: UTC, window: "00:00-24:00",'
        " days: [mon, tue, wed, thu, fri, sat, sun]}\n"
        f"steps:\n{steps}\n",
    )
    add(app, "eva@volvo.example", company="Volvo")
    service.enroll_many(app, "daily", ["eva@volvo.example"], MONDAY_9)
    return "daily"


def bounce_latest(app: App, day: int, action: str = "failed") -> str:
    """Send what is due on `day`, and bounce the newest message softly."""
    at = MONDAY_9 + timedelta(days=day)
    run(app, at)
    latest = sent_to(app, "eva@volvo.example")[-1]
    notice = dsn(latest, "4.2.2", f"452 4.2.2 Mailbox full ({day}, {action})", action=action)
    assert ingest(app, notice, at + timedelta(minutes=5)).kind == "bounce"
    return str(enrollment(app, "eva@volvo.example", "daily").state)


def test_three_soft_bounces_in_a_row_end_it(app: App, daily: str) -> None:
    assert [bounce_latest(app, day) for day in range(3)] == ["active", "active", "bounced"]
    assert len(sent_to(app, "eva@volvo.example")) == 3
    with transaction(app.engine) as session:
        assert session.get(Suppression, "eva@volvo.example") is None  # soft: not suppressed


def test_a_sign_of_life_between_soft_bounces_starts_the_count_again(app: App, daily: str) -> None:
    assert [bounce_latest(app, day) for day in range(2)] == ["active", "active"]
    with transaction(app.engine) as session:  # she opened a message (the tracking pixel)
        person = session.scalars(sa.select(Prospect)).one()
        assert person.id is not None
        session.add(
            Event(
                prospect_id=person.id,
                type=EventType.OPENED,
                at=MONDAY_9 + timedelta(days=1, hours=3),
                data={},
            )
        )
    assert [bounce_latest(app, day) for day in (2, 3, 4)] == ["active", "active", "bounced"]


def test_several_notices_about_one_message_count_once(app: App, daily: str) -> None:
    at = MONDAY_9
    run(app, at)
    [first] = sent_to(app, "eva@volvo.example")
    for n, action in enumerate(("delayed", "delayed", "failed")):
        ingest(app, dsn(first, "4.2.2", f"452 4.2.2 Mailbox full ({n})", action=action), at)
    assert enrollment(app, "eva@volvo.example", "daily").state == EnrollmentState.ACTIVE
    assert [bounce_latest(app, day) for day in (1, 2)] == ["active", "bounced"]


def test_out_of_office_pauses_until_the_return_date_then_resumes_in_the_window(
    app: App, eva: EmailMessage
) -> None:
    text = "I am out of the office until Monday 16 March 2026 with no access to email."
    result = ingest(app, out_of_office(eva, text), MONDAY_9 + timedelta(minutes=5))
    assert result.kind == "auto_reply"
    paused = enrollment(app, "eva@volvo.example")
    assert paused.state == EnrollmentState.PAUSED
    assert paused.resume_at == datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
    run(app, *(MONDAY_9 + timedelta(days=d) for d in range(1, 14)))
    assert len(sent_to(app, "eva@volvo.example")) == 1  # nothing while she is away
    run(app, datetime(2026, 3, 16, 8, 0, tzinfo=UTC), datetime(2026, 3, 16, 9, 0, tzinfo=UTC))
    mails = sent_to(app, "eva@volvo.example")
    assert len(mails) == 2
    assert mails[1]["Date"].datetime == datetime(2026, 3, 16, 9, 0, tzinfo=UTC)


def test_out_of_office_without_a_date_pauses_for_the_configured_delay(
    app: App, eva: EmailMessage
) -> None:
    ingest(app, out_of_office(eva, "I am on vacation with limited access to email."), MONDAY_9)
    paused = enrollment(app, "eva@volvo.example")
    assert paused.state == EnrollmentState.PAUSED
    assert paused.resume_at == MONDAY_9 + timedelta(days=3)


def test_company_reply_pauses_colleagues_at_that_domain(app: App, workdir: Path) -> None:
    write_template(workdir, "hello", "Hi {{ prospect.first_name }}.\n")
    write_template(workdir, "again", "Again, {{ prospect.first_name }}.\n", subject=None)
    write_sequence(workdir, "seq", _sequence_yaml("seq", "stop_on: [reply, company_reply]"))
    for address in ("eva@volvo.example", "bo@volvo.example", "ann@saab.example"):
        add(app, address)
    service.enroll_many(
        app, "seq", ["eva@volvo.example", "bo@volvo.example", "ann@saab.example"], MONDAY_9
    )
    run(app, MONDAY_9)
    [first] = sent_to(app, "eva@volvo.example")
    ingest(app, reply_to(first, "We are looking at this internally."), MONDAY_9)
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.REPLIED
    assert enrollment(app, "bo@volvo.example").state == EnrollmentState.PAUSED
    assert enrollment(app, "ann@saab.example").state == EnrollmentState.ACTIVE


def test_interested_reply_flags_for_a_call_once_and_a_meeting_counts(
    app: App, eva: EmailMessage
) -> None:
    ingest(app, reply_to(eva, "Yes, I'm interested. Can we talk Thursday at 2pm?"), MONDAY_9)
    with transaction(app.engine) as session:
        queue = calls.queue(session)
    assert [(q["email"], q["reason"]) for q in queue] == [("eva@volvo.example", "interested")]
    with transaction(app.engine) as session:
        calls.complete(session, queue[0]["id"], calls.CallOutcome.MEETING, MONDAY_9, handoff="ae")
    assert enrollment(app, "eva@volvo.example").owner == "ae"
    stats = {(r["sequence"], r["step"]): r for r in reports_stats(app)}
    assert stats[("seq", 1)]["meetings"] == 1
    assert stats[("seq", 1)]["replied"] == 1


def test_a_new_mail_from_a_prospect_matches_by_sender(app: App, eva: EmailMessage) -> None:
    msg = EmailMessage()
    msg["From"] = "Eva <EVA@volvo.example>"
    msg["To"] = "ann@acme.example"
    msg["Subject"] = "Your product"
    msg["Message-ID"] = "<fresh@client.example>"
    msg.set_content("Hi Ann, could you send me your pricing?")
    result = ingest(app, msg.as_bytes(), MONDAY_9)
    assert (result.kind, result.match, result.email) == ("reply", "sender", "eva@volvo.example")
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.REPLIED


def test_spam_complaint_suppresses(app: App, eva: EmailMessage) -> None:
    arf = (
        "From: feedback@isp.example\r\nTo: abuse@acme.example\r\nSubject: complaint\r\n"
        "Message-ID: <arf1@isp.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--B\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: isp/1.0\r\nVersion: 1\r\n"
        "Original-Rcpt-To: <eva@volvo.example>\r\n\r\n"
        "--B\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: {eva['From']}\r\nTo: {eva['To']}\r\nMessage-ID: {eva['Message-ID']}\r\n"
        "Subject: Hello\r\n\r\nHi\r\n--B--\r\n"
    ).encode()
    result = ingest(app, arf, MONDAY_9)
    assert (result.kind, result.match) == ("complaint", "complaint_original")
    with transaction(app.engine) as session:
        assert session.get(Suppression, "eva@volvo.example") is not None
    assert len(events_of(app, "eva@volvo.example", EventType.COMPLAINED)) == 1


BAD_MAIL = {
    "garbage": b"\x00\x01\x02 this is not mail at all \xff\xfe",
    "empty": b"",
    "truncated": b"From: x@y.example\r\nSubject: cut\r\nContent-Type: multipart/mixed; bound",
    "wrong_charset": (
        b"From: x@y.example\r\nSubject: =?utf-8?B?////?=\r\n"
        b"Content-Type: text/plain; charset=klingon\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!!not base64@@@\r\n"
    ),
    "latin1_as_utf8": (
        "From: x@y.example\r\nSubject: caf\xe9\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "r\xe9sum\xe9 attached\r\n"
    ).encode("latin-1"),
    "huge": b"From: x@y.example\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n"
    + (b"B" * 76 + b"\r\n") * (10 * 1024 * 1024 // 78),
}


@pytest.mark.parametrize("name", sorted(BAD_MAIL))
def test_bad_mail_is_kept_reported_and_never_crashes(app: App, name: str) -> None:
    raw = BAD_MAIL[name]
    result = ingest(app, raw, MONDAY_9, source=name)
    assert result.status in ("unmatched", "error")
    with transaction(app.engine) as session:
        row = session.get(InboundMessage, result.id)
        assert row is not None and row.raw == raw and row.size == len(raw)


def test_unmatched_messages_are_listed(app: App, seq: str, settings: object) -> None:
    from outreach.inbound.ingest import listing
    from outreach.models import InboundStatus

    stranger = b"From: who@nowhere.example\r\nSubject: hello\r\nMessage-ID: <x@n>\r\n\r\nhi\r\n"
    ingest(app, stranger, MONDAY_9, source="stranger.eml")
    with transaction(app.engine) as session:
        rows = listing(session, [InboundStatus.UNMATCHED, InboundStatus.ERROR])
    assert [(r["from"], r["source"], r["status"]) for r in rows] == [
        ("who@nowhere.example", "stranger.eml", "unmatched")
    ]


def test_a_received_message_is_handled_by_the_actor_once(app: App, eva: EmailMessage) -> None:
    from outreach.inbound.ingest import receive

    raw = reply_to(eva, "Thanks, what does it cost?")
    inbound_id, seen = receive(app, raw, MONDAY_9, "webhook")
    again, seen_again = receive(app, raw, MONDAY_9, "webhook")  # the provider retried
    assert (seen, again, seen_again) == (False, inbound_id, True)
    runtime = start(app, threads=1)
    try:
        for _ in range(2):  # a redelivered broker message too
            runtime.actors.process_inbound.send(inbound_id, MONDAY_9.isoformat())
        runtime.wait()
    finally:
        runtime.close()
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.REPLIED
    assert len(events_of(app, "eva@volvo.example", EventType.REPLIED)) == 1


def test_cli_ingests_mbox_and_maildir_and_lists_unmatched(
    app: App, eva: EmailMessage, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mailbox

    from outreach.cli import cli

    box = mailbox.mbox(workdir / "in.mbox")
    box.add(reply_to(eva, "Thanks, what does it cost?"))
    box.add(b"From: who@nowhere.example\r\nSubject: hi\r\nMessage-ID: <s@n>\r\n\r\nhello\r\n")
    box.close()
    maildir = mailbox.Maildir(workdir / "Maildir")
    maildir.add(out_of_office(eva, "Back on 16 March."))
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("OUTREACH_DATABASE_URL", str(app.settings.database_url))
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "test-secret")
    runner = CliRunner()
    done = runner.invoke(
        cli, ["ingest", "in.mbox", "Maildir", "--now", "2026-03-02T12:00:00Z", "--json"]
    )
    assert done.exit_code == 0, done.output
    results = json.loads(done.output)
    assert [r["kind"] for r in results] == ["reply", "reply", "auto_reply"]
    assert [r["status"] for r in results] == ["processed", "unmatched", "processed"]
    listed = runner.invoke(cli, ["inbox", "--unmatched", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["from"] for r in json.loads(listed.output)] == ["who@nowhere.example"]
    missing = runner.invoke(cli, ["ingest", "nope.eml"])
    assert missing.exit_code == 1


def test_a_colleague_asking_to_be_removed_from_a_forward_is_suppressed_not_the_prospect(
    app: App, eva: EmailMessage
) -> None:
    answer = reply_to(eva, "Please remove me from your list.", sender="boss@volvo.example")
    result = ingest(app, answer, MONDAY_9)
    assert result.kind == "unsubscribe"
    with transaction(app.engine) as session:
        assert session.get(Suppression, "boss@volvo.example") is not None
        assert session.get(Suppression, "eva@volvo.example") is None


def test_an_out_of_office_from_someone_else_pauses_nothing(app: App, eva: EmailMessage) -> None:
    raw = out_of_office(
        eva, "I am out of the office until 16 March 2026.", sender="assistant@volvo.example"
    )
    assert ingest(app, raw, MONDAY_9).kind == "auto_reply"
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.ACTIVE


def test_a_bounce_about_a_forwarding_address_does_not_suppress_the_prospect(
    app: App, eva: EmailMessage
) -> None:
    raw = dsn(eva, "5.1.1", "550 5.1.1 User unknown").replace(
        b"Final-Recipient: rfc822; eva@volvo.example",
        b"Final-Recipient: rfc822; eva.old@elsewhere.example",
    )
    result = ingest(app, raw, MONDAY_9)
    assert (result.kind, result.match) == ("bounce", "bounce_original")
    with transaction(app.engine) as session:
        assert session.get(Suppression, "eva@volvo.example") is None
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.ACTIVE


def test_each_recipient_of_a_report_keeps_its_own_hard_or_soft(app: App, eva: EmailMessage) -> None:
    raw = dsn(eva, "4.4.1", "451 4.4.1 Connection timed out", action="delayed").replace(
        b"Final-Recipient: rfc822; eva@volvo.example",
        b"Final-Recipient: rfc822; nobody@else.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
        b"Final-Recipient: rfc822; eva@volvo.example",
    )
    assert ingest(app, raw, MONDAY_9).kind == "bounce"
    with transaction(app.engine) as session:
        assert session.get(Suppression, "eva@volvo.example") is None  # hers was only delayed


def test_a_message_whose_processing_fails_is_kept_as_an_error(
    app: App, eva: EmailMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outreach.inbound import effects

    def broken(*_args: object) -> list[str]:
        raise RuntimeError("simulated failure while acting")

    monkeypatch.setattr(effects.Effects, "apply", broken)
    result = ingest(app, reply_to(eva, "Thanks, what does it cost?"), MONDAY_9)
    assert result.status == "error" and "simulated failure" in (result.error or "")
    assert enrollment(app, "eva@volvo.example").state == EnrollmentState.ACTIVE
    with transaction(app.engine) as session:
        row = session.get(InboundMessage, result.id)
        assert row is not None and row.status == "error" and row.raw


def test_opens_and_clicks_reach_the_threshold_and_flag_once(app: App, eva: EmailMessage) -> None:
    from outreach import engagement

    flagged = []
    with transaction(app.engine) as session:
        person = session.scalars(sa.select(Prospect)).one()
        mine = session.scalars(sa.select(Enrollment)).one()
        # the default policy: open 1, click 3, threshold 5
        for signal in ("open", "open", "click", "open", "click"):
            task = engagement.score(session, app.versions, person, mine, signal, MONDAY_9)  # type: ignore[arg-type]
            flagged.append(task is not None)
        assert person.score == 9
    assert flagged == [False, False, True, False, False]
    with transaction(app.engine) as session:
        queue = calls.queue(session)
    assert [(q["email"], q["reason"], q["score"]) for q in queue] == [
        ("eva@volvo.example", "engaged", 9)
    ]


def test_call_outcomes_callback_requeues_no_answer_goes_on(app: App, eva: EmailMessage) -> None:
    ingest(app, reply_to(eva, "Yes, I'm interested. Call me."), MONDAY_9)
    with transaction(app.engine) as session:
        [task] = calls.queue(session)
        later = MONDAY_9 + timedelta(days=2)
        calls.complete(session, task["id"], calls.CallOutcome.CALLBACK, MONDAY_9, callback_at=later)
    with transaction(app.engine) as session:
        [again] = calls.queue(session)
        assert (again["id"], again["due_at"]) == (task["id"], later.isoformat())
        calls.complete(session, task["id"], calls.CallOutcome.NO_ANSWER, later)
    with transaction(app.engine) as session:
        assert calls.queue(session) == []
    view_events = [e.type for e in events_of(app, "eva@volvo.example", EventType.CALL_DONE)]
    assert view_events == [EventType.CALL_DONE, EventType.CALL_DONE]
