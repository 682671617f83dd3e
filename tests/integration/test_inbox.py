"""`outreach inbox` on a real Dovecot: replies ingested from IMAP once, across restarts."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa

from outreach import service
from outreach.app import App
from outreach.db import transaction
from outreach.inbound.imap import INGESTED
from outreach.inbound.ingest import ingest
from outreach.inbound.mailbox import watch
from outreach.models import Enrollment, EnrollmentState, Event, EventType, InboundMessage, Prospect
from outreach.runtime import start
from tests import conftest_imap
from tests.conftest import write_blast
from tests.conftest_imap import ImapBox

dovecot = conftest_imap.dovecot
imap_box = conftest_imap.imap_box
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def sent_reply(app: App, workdir: Path) -> bytes:
    """Eva got our first email; her reply to it, as her mail client would write it."""
    write_blast(workdir, steps=2)
    service.enroll_many(app, "blast", ["eva@volvo.example"], NOW)
    runtime = start(app, threads=1)
    try:
        runtime.tick(NOW, simulated=True)
    finally:
        runtime.close()
    [sent] = sorted((workdir / "outbox").glob("*.eml"))
    first = sent.read_text()
    message_id = next(line for line in first.splitlines() if line.startswith("Message-ID:"))
    reply = EmailMessage()
    reply["From"] = "Eva <eva@volvo.example>"
    reply["To"] = "ann@acme.example"
    reply["Subject"] = "Re: Hello"
    reply["Message-ID"] = "<eva-reply@volvo.example>"
    reply["In-Reply-To"] = message_id.split(":", 1)[1].strip()
    reply.set_content("Thanks Ann, send me a few times for a call next week.")
    return reply.as_bytes()


def stranger() -> bytes:
    return (
        b"From: who@nowhere.example\r\nTo: ann@acme.example\r\nSubject: hi\r\n"
        b"Message-ID: <who@nowhere.example>\r\n\r\nhello there\r\n"
    )


def counts(app: App) -> tuple[int, int]:
    with transaction(app.engine) as session:
        kept = session.scalar(sa.select(sa.func.count()).select_from(InboundMessage))
        replies = session.scalar(
            sa.select(sa.func.count()).select_from(Event).where(Event.type == EventType.REPLIED)
        )
    return int(kept or 0), int(replies or 0)


def test_inbox_ingests_each_message_once_across_restarts(
    app: App, workdir: Path, imap_box: ImapBox
) -> None:
    reply = sent_reply(app, workdir)
    imap_box.append(reply, stranger())
    assert watch(app, imap_box.url(), once=True) == 2
    with transaction(app.engine) as session:
        state = session.scalars(
            sa.select(Enrollment.state).join(Prospect).where(Prospect.email == "eva@volvo.example")
        ).one()
    assert state == EnrollmentState.REPLIED
    assert counts(app) == (2, 1)
    flags = imap_box.flags()
    assert all(INGESTED.encode() in f for f in flags.values())
    # a restarted process finds nothing new
    assert watch(app, imap_box.url(), once=True) == 0
    assert counts(app) == (2, 1)


def test_a_crash_between_ingest_and_flag_changes_nothing_the_second_time(
    app: App, workdir: Path, imap_box: ImapBox
) -> None:
    reply = sent_reply(app, workdir)
    imap_box.append(reply)
    # the earlier process ingested it and died before it could flag the message
    ingest(app, reply, NOW, source="imap")
    assert counts(app) == (1, 1)
    assert watch(app, imap_box.url(), once=True) == 1  # handed over again...
    assert counts(app) == (1, 1)  # ...and recognised: one message, one effect
    assert all(INGESTED.encode() in f for f in imap_box.flags().values())
