"""Running one due step of one enrollment: the at-most-once path from database to SMTP.

A step runs in three parts. First, under a lock on the enrollment, everything is checked
again (state, step, suppression, window, sender limits), the email is rendered and the
send is reserved in the ledger; that is committed before any SMTP is spoken. Then the
message is handed to the mailer. Last, the outcome is recorded and the enrollment moves on.
A worker killed between the first and the last part leaves a 'sending' row behind, which
the next attempt turns into 'unknown' rather than sending again.

The common case goes through `fastpath`; this module handles everything else, one
enrollment at a time, with the full ORM.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import claims, events, fastpath, ledger, limits
from outreach import enrollment as enrollments
from outreach.app import App
from outreach.claims import claim_due
from outreach.compose import Composed, compose, render_note
from outreach.db import transaction
from outreach.errors import (
    AmbiguousSendError,
    MissingVariable,
    PermanentSendError,
    RenderError,
    TransientSendError,
)
from outreach.fastpath import Prepared
from outreach.message import build_message
from outreach.models import (
    CallTask,
    Enrollment,
    EnrollmentState,
    EventType,
    Prospect,
    Send,
    SendStatus,
    Suppression,
)
from outreach.outcomes import (
    Outcome,
    durably,
    mark_unknown,
    record_failed,
    record_sent,
    record_transient,
    record_unknown,
    release,
    still_wanted,
)
from outreach.schedule import is_open, next_opening
from outreach.sequence import Sequence, Step

__all__ = ["Outcome", "Prepared", "claim_due", "deliver", "prepare", "run_step"]


def run_step(app: App, enrollment_id: int, step: int, now: datetime) -> Outcome:
    """Run one due step of one enrollment, sending its email at most once.

    A transient refusal is recorded (the step is deferred) and raised, so a retrying caller
    such as Dramatiq's Retries middleware can try again with backoff.
    """
    prepared = prepare(app, enrollment_id, step, now)
    if isinstance(prepared, Outcome):
        return prepared
    outcome = deliver(app, prepared, now)
    if outcome.status == "sent":
        record_sent(app, [prepared], now)
    return outcome


def deliver(app: App, prepared: Prepared, now: datetime) -> Outcome:
    """Hand one reserved message to the mailer; record a failure, leave a success to record."""
    if not still_wanted(app, prepared):
        release(app, prepared, NOT_WANTED)
        return Outcome("skipped", "stopped just before sending", prepared.send_id)
    if not ledger.hand(app.engine, [prepared.send_id]):
        return Outcome("skipped", TAKEN_OVER, prepared.send_id)
    refusal = attempt(app, prepared)
    if refusal is None:
        return Outcome("sent", prepared.message_id, prepared.send_id)
    outcome = record_refusal(app, prepared, refusal, now)
    if outcome.status == "retry":
        raise refusal
    return outcome


NOT_WANTED = "not sent: the enrollment changed just before sending"
TAKEN_OVER = "not sent here: another worker took the reservation over"
SendRefusal = TransientSendError | PermanentSendError | AmbiguousSendError


def attempt(app: App, prepared: Prepared) -> SendRefusal | None:
    """Speak SMTP for one message: None when the server took it, else what went wrong."""
    try:
        app.mailer.send(
            prepared.envelope_from, [prepared.recipient], prepared.data, prepared.message_id
        )
    except (TransientSendError, PermanentSendError, AmbiguousSendError) as exc:
        return exc
    return None


def record_refusal(app: App, prepared: Prepared, exc: SendRefusal, now: datetime) -> Outcome:
    """Record a message the server did not (or may not have) taken."""
    if isinstance(exc, TransientSendError):
        record: Callable[[], Outcome] = lambda: record_transient(app, prepared, exc, now)  # noqa: E731
    elif isinstance(exc, PermanentSendError):
        record = lambda: record_failed(app, prepared, exc, now)  # noqa: E731
    else:
        record = lambda: record_unknown(app, prepared, str(exc), now)  # noqa: E731
    return durably(app, record, f"the answer to send {prepared.send_id}")


def _load(session: Session, enrollment_id: int) -> tuple[Enrollment, Prospect, bool] | None:
    """The enrollment (locked), its prospect and whether the address is suppressed: one query."""
    suppressed = sa.exists().where(col(Suppression.email) == col(Prospect.email))
    query = (
        select(Enrollment, Prospect, suppressed.label("suppressed"))  # type: ignore[call-overload]
        .join(Prospect, col(Prospect.id) == col(Enrollment.prospect_id))
        .where(col(Enrollment.id) == enrollment_id)
        .with_for_update(of=Enrollment)
    )
    row = session.execute(query).first()
    return (row[0], row[1], bool(row[2])) if row else None


def prepare(app: App, enrollment_id: int, step: int, now: datetime) -> Prepared | Outcome:
    """Check everything again under the enrollment's lock, render, and reserve the send."""
    with transaction(app.engine) as session:
        ready, _left = fastpath.prepare_many(app, session, [(enrollment_id, step)], now)
        if ready:
            return ready[0]
        loaded = _load(session, enrollment_id)
        if loaded is None or loaded[0].state != EnrollmentState.ACTIVE:
            return Outcome("skipped", "not active")
        enrollment, prospect, suppressed = loaded
        if enrollment.step != step:
            return Outcome("skipped", f"already at step {enrollment.step}")
        sequence = app.versions.load(session, enrollment.version_id)
        if suppressed:
            enrollments.stop(session, enrollment, "address is suppressed", now)
            enrollment.state = EnrollmentState.UNSUBSCRIBED
            return Outcome("skipped", "suppressed")
        if step > len(sequence.steps):
            enrollments.finish(enrollment, now)
            return Outcome("finished")
        tz = sequence.schedule.zone(prospect.timezone)
        if not is_open(now, sequence.schedule, tz):
            enrollment.next_run_at = next_opening(now, sequence.schedule, tz)
            claims.release(session, enrollment_id)
            return Outcome("deferred", "outside the sending window")
        current = sequence.step(step)
        if current.kind != "email":
            return _create_task(app, session, sequence, current, enrollment, prospect, now)
        return _prepare_email(app, session, sequence, current, enrollment, prospect, now)


def _create_task(
    app: App,
    session: Session,
    sequence: Sequence,
    step: Step,
    enrollment: Enrollment,
    prospect: Prospect,
    now: datetime,
) -> Outcome:
    note = render_note(app, sequence, step, prospect, enrollment.sender)
    exists = session.scalar(
        select(CallTask.id).where(
            CallTask.enrollment_id == enrollment.id, CallTask.step == step.number
        )
    )
    if exists is None:
        assert prospect.id is not None
        session.add(
            CallTask(
                prospect_id=prospect.id,
                enrollment_id=enrollment.id,
                sequence_id=sequence.id,
                step=step.number,
                owner=enrollment.owner,
                reason=f"{step.kind}_step",
                note=note,
                due_at=now,
                created_at=now,
            )
        )
        events.for_enrollment(session, enrollment, EventType.CALL_TASK, now, note=note)
    enrollments.advance(session, sequence, enrollment, prospect, now)
    return Outcome("task", note or "")


def _prepare_email(
    app: App,
    session: Session,
    sequence: Sequence,
    step: Step,
    enrollment: Enrollment,
    prospect: Prospect,
    now: datetime,
) -> Prepared | Outcome:
    assert enrollment.id is not None
    existing = ledger.find(session, enrollment.id, step.number)
    inflight = app.settings.send_inflight_seconds
    if existing is not None and not ledger.reusable(existing, now, inflight):
        return _resolve_existing(app, session, enrollment, existing, now)
    composed = _compose(app, session, sequence, step, enrollment, prospect, now)
    if isinstance(composed, Outcome):
        return composed
    tz = sequence.schedule.zone(prospect.timezone)
    if sequence.schedule.daily_limit or sequence.schedule.hourly_limit:
        limits.lock_sender(session, composed.sender_email)
        free = limits.free_at(session, composed.sender_email, sequence.schedule, now)
        if free is not None:
            enrollment.next_run_at = next_opening(free, sequence.schedule, tz)
            claims.release(session, enrollment.id)
            return Outcome("deferred", f"{composed.sender_email} is at its sending limit")
    assert enrollment.id is not None and prospect.id is not None
    try:
        data = build_message(composed.email, app.dkim)
    except ValueError as exc:
        # e.g. an internationalized address, which needs SMTPUTF8 that is not sent yet
        enrollments.pause(session, enrollment, f"cannot build the message: {exc}", now)
        return Outcome("paused", str(exc))
    send_id = ledger.reserve(session, existing, composed, enrollment.id, step.number, now)
    return Prepared(
        send_id=send_id,
        enrollment_id=enrollment.id,
        step=step.number,
        envelope_from=composed.sender_email,
        recipient=prospect.email,
        message_id=composed.email.message_id,
        data=data,
        prospect_id=prospect.id,
        sequence_id=sequence.id,
        template=composed.template,
        sequence=sequence,
        tz=tz,
    )


def _compose(
    app: App,
    session: Session,
    sequence: Sequence,
    step: Step,
    enrollment: Enrollment,
    prospect: Prospect,
    now: datetime,
) -> Composed | Outcome:
    assert enrollment.id is not None
    template = enrollments.variant(step.templates, enrollment.id, step.number)
    earlier = ledger.thread(session, enrollment.id, step.number) if step.thread else []
    try:
        return compose(
            app,
            sequence=sequence,
            step=step,
            template=template,
            prospect=prospect,
            sender=enrollment.sender,
            enrollment_id=enrollment.id,
            earlier=earlier,
            now=now,
        )
    except MissingVariable as exc:
        enrollments.pause(session, enrollment, str(exc), now)
        return Outcome("paused", str(exc))
    except RenderError as exc:
        enrollments.pause(session, enrollment, f"template {template}: {exc}", now)
        return Outcome("paused", str(exc))


def _resolve_existing(
    app: App, session: Session, enrollment: Enrollment, send: Send, now: datetime
) -> Outcome:
    if send.status == SendStatus.SENDING and ledger.in_flight(
        send, now, app.settings.send_inflight_seconds
    ):
        return Outcome("skipped", "send in flight", send.id)
    if send.status == SendStatus.SENDING:
        mark_unknown(session, enrollment, send, "cut off before its outcome was recorded", now)
        return Outcome("unknown", "cut off before its outcome was recorded", send.id)
    if send.status == SendStatus.SENT:
        prospect = session.get(Prospect, enrollment.prospect_id)
        assert prospect is not None
        enrollments.advance(
            session, app.versions.load(session, enrollment.version_id), enrollment, prospect, now
        )
    return Outcome("skipped", f"step already {send.status}", send.id)
