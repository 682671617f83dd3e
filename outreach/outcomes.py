"""Recording what the mail server said: sent, retry later, refused, or unknown."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import select

from outreach import bulk, crashes, events
from outreach import enrollment as enrollments
from outreach.app import App
from outreach.db import transaction
from outreach.errors import PermanentSendError, TransientSendError
from outreach.fastpath import E, Prepared, S
from outreach.models import (
    Enrollment,
    EnrollmentState,
    Event,
    EventType,
    Send,
    SendStatus,
    Suppression,
)

T = TypeVar("T")
# how long a worker keeps trying to record a server's answer while the database is away
RECORD_PATIENCE_SECONDS = 60.0
log = logging.getLogger("outreach.outcomes")


@dataclass(frozen=True)
class Outcome:
    """What running a step did, for logs, tests and the demo."""

    status: str
    detail: str = ""
    send_id: int | None = None  # the ledger row, when the step has one


MARK_SENT = (
    sa.update(S)
    .where(S.c.id == sa.bindparam("sid"), S.c.status == SendStatus.SENDING)
    .values(status=SendStatus.SENT, sent_at=sa.bindparam("at"))
)
MOVE_ON = (
    sa.update(E)
    .where(
        E.c.id == sa.bindparam("eid"),
        E.c.state == EnrollmentState.ACTIVE,
        E.c.step == sa.bindparam("current"),
    )
    .values(
        step=sa.bindparam("next_step"),
        last_step_at=sa.bindparam("at"),
        updated_at=sa.bindparam("at"),
        next_run_at=sa.bindparam("following"),
        state=sa.bindparam("new_state"),
    )
)
ADD_EVENT = sa.insert(Event.__table__)  # type: ignore[attr-defined]


def record_sent(app: App, sent: list[Prepared], now: datetime) -> None:
    """The server took these messages: record them and move their enrollments on.

    Three statements for the whole list, no ORM: this is the hot path. An enrollment moves
    on only if nothing (a reply, a stop) changed it while its message was in flight.
    """
    if sent:
        durably(app, lambda: _record_sent_once(app, sent, now), f"{len(sent)} sent messages")


def _record_sent_once(app: App, sent: list[Prepared], now: datetime) -> None:
    with app.engine.begin() as connection:
        write_sent(connection, sent, now)


def durably(app: App, action: Callable[[], T], what: str) -> T:
    """Run a write that records what a mail server said, retrying while the database is away.

    Once the server has answered, its answer must reach the ledger: a send left 'sending'
    is later judged 'unknown', though we knew. So a lost connection (a restart, a failover)
    is waited out, for up to RECORD_PATIENCE_SECONDS, before the error is let through.
    """
    delay, deadline = 0.2, time.monotonic() + RECORD_PATIENCE_SECONDS
    while True:
        try:
            return action()
        except sa.exc.OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("could not record %s (%s); again in %.1f s", what, exc.orig, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def write_sent(connection: sa.Connection, sent: list[Prepared], now: datetime) -> None:
    """The statements of `record_sent`, on a connection whose transaction the caller owns."""
    if not sent:
        return
    if connection.dialect.name == "postgresql":
        bulk.record_sent(connection, [_sent_row(item, now) for item in sent], now)
        return
    moves, added = [], []
    for item in sent:
        following = item.next_run_at(now)
        state = EnrollmentState.ACTIVE if following else EnrollmentState.FINISHED
        moves.append(
            {
                "eid": item.enrollment_id,
                "current": item.step,
                "next_step": item.step + 1,
                "at": now,
                "following": following,
                "new_state": state,
            }
        )
        added.append(
            {
                "prospect_id": item.prospect_id,
                "enrollment_id": item.enrollment_id,
                "sequence_id": item.sequence_id,
                "step": item.step,
                "type": EventType.SENT,
                "at": now,
                "data": {"template": item.template, "message_id": item.message_id},
            }
        )
    # only a send still 'sending' becomes 'sent': one already judged 'unknown' stays so
    connection.execute(MARK_SENT, [{"sid": item.send_id, "at": now} for item in sent])
    connection.execute(MOVE_ON, moves)
    connection.execute(ADD_EVENT, added)
    connection.execute(crashes.FINISH, {"claims": [(i.enrollment_id, i.step) for i in sent]})


def _sent_row(item: Prepared, now: datetime) -> dict[str, Any]:
    following = item.next_run_at(now)
    return {
        "sid": item.send_id,
        "eid": item.enrollment_id,
        "cur": item.step,
        "following": following,
        "state": str(EnrollmentState.ACTIVE if following else EnrollmentState.FINISHED),
        "pid": item.prospect_id,
        "seq": item.sequence_id,
        "data": {"template": item.template, "message_id": item.message_id},
    }


def _locked_pair(session: Session, prepared: Prepared) -> tuple[Send, Enrollment]:
    # the enrollment first, then its send: the order `prepare` takes them in
    enrollment = session.scalar(
        select(Enrollment).where(Enrollment.id == prepared.enrollment_id).with_for_update()
    )
    send = session.get(Send, prepared.send_id, with_for_update=True)
    assert send is not None and enrollment is not None
    return send, enrollment


def record_transient(
    app: App, prepared: Prepared, exc: TransientSendError, now: datetime
) -> Outcome:
    """Not taken this time: retry later, or fail the step once retrying has gone on too long.

    The retries themselves are Dramatiq's (Retries middleware, doubling backoff). The
    enrollment's lease is pushed past them, so the scheduler only steps in when that chain
    of retries has ended or was lost. Greylisting and short outages last minutes, so the
    limit is a span of time, not a number of attempts.
    """
    settings = app.settings
    with transaction(app.engine) as session:
        send, enrollment = _locked_pair(session, prepared)
        send.error = str(exc)
        send.code = getattr(exc, "code", None)
        if now - send.created_at >= timedelta(hours=settings.retry_give_up_hours):
            why = f"still refused after {settings.retry_give_up_hours:g} hours: {exc}"
            fail(session, enrollment, send, why, now)
            return Outcome("failed", str(exc), prepared.send_id)
        send.status = SendStatus.DEFERRED
        if enrollment.state == EnrollmentState.ACTIVE and enrollment.step == send.step:
            enrollment.next_run_at = now + timedelta(seconds=settings.retry_lease_seconds)
    return Outcome("retry", str(exc), prepared.send_id)


STILL_WANTED = sa.select(E.c.id).where(
    E.c.id == sa.bindparam("eid"),
    E.c.state == EnrollmentState.ACTIVE,
    E.c.step == sa.bindparam("step"),
    ~sa.exists().where(
        Suppression.__table__.c.email == sa.bindparam("email")  # type: ignore[attr-defined]
    ),
)
RELEASE = (
    sa.update(S)
    .where(S.c.id == sa.bindparam("sid"), S.c.status == SendStatus.SENDING)
    .values(status=SendStatus.DEFERRED, error=sa.bindparam("why"))
)


def still_wanted(app: App, prepared: Prepared) -> bool:
    """True while the enrollment is active at this step and the address is not suppressed.

    Checked just before SMTP, so a stop, reply or unsubscribe that was recorded before the
    send began wins even when the step was reserved earlier in a batch.
    """
    params = {"eid": prepared.enrollment_id, "step": prepared.step, "email": prepared.recipient}
    with app.engine.connect() as connection:
        return connection.execute(STILL_WANTED, params).first() is not None


def release(app: App, prepared: Prepared, why: str) -> None:
    """Give back a reservation that was never sent: the step counts as not sent."""
    with app.engine.begin() as connection:
        connection.execute(RELEASE, {"sid": prepared.send_id, "why": why})


def record_failed(app: App, prepared: Prepared, exc: PermanentSendError, now: datetime) -> Outcome:
    """Refused for good: keep the server's answer and stop the enrollment."""
    with transaction(app.engine) as session:
        send, enrollment = _locked_pair(session, prepared)
        send.code = getattr(exc, "code", None)
        fail(session, enrollment, send, str(exc), now)
    return Outcome("failed", str(exc), prepared.send_id)


def fail(session: Session, enrollment: Enrollment, send: Send, why: str, now: datetime) -> None:
    """Mark the send failed and end the enrollment with the reason."""
    send.status = SendStatus.FAILED
    send.error = why
    events.for_enrollment(session, enrollment, EventType.FAILED, now, step=send.step, reason=why)
    if enrollment.state == EnrollmentState.ACTIVE:
        enrollment.state = EnrollmentState.FAILED
        enrollment.reason = why
        enrollment.next_run_at = None
        enrollment.updated_at = now


def record_unknown(app: App, prepared: Prepared, why: str, now: datetime) -> Outcome:
    """The connection broke after the data went out: never resend, let a person decide."""
    with transaction(app.engine) as session:
        send, enrollment = _locked_pair(session, prepared)
        mark_unknown(session, enrollment, send, why, now)
    return Outcome("unknown", why, prepared.send_id)


def mark_unknown(
    session: Session, enrollment: Enrollment, send: Send, why: str, now: datetime
) -> None:
    """The send may have been delivered: record that and pause for a person to decide."""
    send.status = SendStatus.UNKNOWN
    send.error = why
    events.for_enrollment(
        session,
        enrollment,
        EventType.FAILED,
        now,
        send_status="unknown",
        reason=why,
        message_id=send.message_id,
    )
    if enrollment.state == EnrollmentState.ACTIVE and enrollment.step == send.step:
        reason = f"step {send.step} may have been sent ({why}); resume skips it"
        enrollments.pause(session, enrollment, reason, now)
