"""Claiming due steps and running one step: the at-most-once path from database to SMTP.

A step runs in three parts. First, under a lock on the enrollment, everything is checked
again (state, step, suppression, window, sender limits), the email is rendered and the
send is reserved in the ledger; that is committed before any SMTP is spoken. Then the
message is handed to the mailer. Last, the outcome is recorded and the enrollment moves on.
A worker killed between the first and the last part leaves a 'sending' row behind, which
the next attempt turns into 'unknown' rather than sending again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import enrollment as enrollments
from outreach import events, ledger, limits
from outreach.app import App
from outreach.compose import Composed, compose
from outreach.db import transaction
from outreach.errors import (
    AmbiguousSendError,
    MissingVariable,
    PermanentSendError,
    RenderError,
    TransientSendError,
)
from outreach.message import build_message
from outreach.models import (
    CallTask,
    Enrollment,
    EnrollmentState,
    EventType,
    Prospect,
    Send,
    SendStatus,
)
from outreach.schedule import is_open, next_opening
from outreach.sequence import Sequence, Step
from outreach.suppression import is_suppressed

log = logging.getLogger("outreach.dispatch")


@dataclass(frozen=True)
class Outcome:
    """What running a step did, for logs, tests and the demo."""

    status: str
    detail: str = ""


def claim_due(
    engine: sa.Engine, now: datetime, limit: int, lease_seconds: int
) -> list[tuple[int, int]]:
    """Claim up to `limit` due steps: each is leased so no other scheduler takes it.

    On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets several schedulers claim side by side.
    A claimed step whose message is lost comes due again when its lease runs out.
    """
    due = (
        select(Enrollment.id)
        .where(Enrollment.state == EnrollmentState.ACTIVE, Enrollment.next_run_at <= now)  # type: ignore[operator]
        .order_by(col(Enrollment.next_run_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        sa.update(Enrollment)
        .where(Enrollment.id.in_(due.scalar_subquery()))  # type: ignore[union-attr]
        .values(
            next_run_at=now + timedelta(seconds=lease_seconds),
            dispatches=Enrollment.dispatches + 1,
        )
        .returning(col(Enrollment.id), col(Enrollment.step))
        .execution_options(synchronize_session=False)
    )
    with transaction(engine) as session:
        return [(row[0], row[1]) for row in session.execute(claim)]  # type: ignore[misc]


@dataclass(frozen=True)
class Prepared:
    """A reserved send, ready to hand to the mailer."""

    send_id: int
    enrollment_id: int
    step: int
    envelope_from: str
    recipient: str
    message_id: str
    data: bytes


def run_step(app: App, enrollment_id: int, step: int, now: datetime) -> Outcome:
    """Run one due step of one enrollment, sending its email at most once."""
    prepared = prepare(app, enrollment_id, step, now)
    if isinstance(prepared, Outcome):
        return prepared
    try:
        app.mailer.send(
            prepared.envelope_from, [prepared.recipient], prepared.data, prepared.message_id
        )
    except TransientSendError as exc:
        record_transient(app, prepared, exc, now)
        raise
    except PermanentSendError as exc:
        return record_failed(app, prepared, exc, now)
    except AmbiguousSendError as exc:
        return record_unknown(app, prepared, str(exc), now)
    return record_sent(app, prepared, now)


def _lock(session: Session, enrollment_id: int) -> Enrollment | None:
    query = select(Enrollment).where(Enrollment.id == enrollment_id).with_for_update()
    return session.scalar(query)


def prepare(app: App, enrollment_id: int, step: int, now: datetime) -> Prepared | Outcome:
    """Check everything again under the enrollment's lock, render, and reserve the send."""
    with transaction(app.engine) as session:
        enrollment = _lock(session, enrollment_id)
        if enrollment is None or enrollment.state != EnrollmentState.ACTIVE:
            return Outcome("skipped", "not active")
        if enrollment.step != step:
            return Outcome("skipped", f"already at step {enrollment.step}")
        prospect = session.get(Prospect, enrollment.prospect_id)
        assert prospect is not None
        sequence = app.versions.load(session, enrollment.version_id)
        if is_suppressed(session, prospect.email):
            enrollments.stop(session, enrollment, "address is suppressed", now)
            enrollment.state = EnrollmentState.UNSUBSCRIBED
            return Outcome("skipped", "suppressed")
        if step > len(sequence.steps):
            enrollments.finish(enrollment, now)
            return Outcome("finished")
        tz = sequence.schedule.zone(prospect.timezone)
        if not is_open(now, sequence.schedule, tz):
            enrollment.next_run_at = next_opening(now, sequence.schedule, tz)
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
    note = _note(app, sequence, step, enrollment, prospect)
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


def _note(
    app: App, sequence: Sequence, step: Step, enrollment: Enrollment, prospect: Prospect
) -> str | None:
    if not step.note:
        return None
    from outreach.compose import context

    try:
        return app.renderer.render_string(
            step.note, context(prospect, sequence, enrollment.sender, step.number, "")
        )
    except RenderError:
        # a task is for a person, who can read the note as written
        return step.note


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
    if existing is not None and existing.status != SendStatus.DEFERRED:
        return _resolve_existing(app, session, enrollment, existing, now)
    composed = _compose(app, session, sequence, step, enrollment, prospect, now)
    if isinstance(composed, Outcome):
        return composed
    limits.lock_sender(session, composed.sender_email)
    free = limits.free_at(session, composed.sender_email, sequence.schedule, now)
    if free is not None:
        tz = sequence.schedule.zone(prospect.timezone)
        enrollment.next_run_at = next_opening(free, sequence.schedule, tz)
        return Outcome("deferred", f"{composed.sender_email} is at its sending limit")
    draft = Send(
        enrollment_id=enrollment.id,
        step=step.number,
        message_id=composed.email.message_id,
        status=SendStatus.SENDING,
        template=composed.template,
        subject=composed.email.subject,
        to_email=prospect.email,
        sender_email=composed.sender_email,
    )
    send = ledger.reserve(session, existing, draft, now)
    # while the send is in flight, the scheduler must not hand the step out again
    enrollment.next_run_at = now + timedelta(seconds=app.settings.send_inflight_seconds)
    assert send.id is not None
    return Prepared(
        send_id=send.id,
        enrollment_id=enrollment.id,
        step=step.number,
        envelope_from=composed.sender_email,
        recipient=prospect.email,
        message_id=composed.email.message_id,
        data=build_message(composed.email, app.dkim),
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
            renderer=app.renderer,
            secret=app.secret,
            base_url=app.settings.base_url,
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
        return Outcome("skipped", "send in flight")
    if send.status == SendStatus.SENDING:
        _mark_unknown(session, enrollment, send, "cut off before its outcome was recorded", now)
        return Outcome("unknown", "cut off before its outcome was recorded")
    if send.status == SendStatus.SENT:
        prospect = session.get(Prospect, enrollment.prospect_id)
        assert prospect is not None
        enrollments.advance(
            session, app.versions.load(session, enrollment.version_id), enrollment, prospect, now
        )
    return Outcome("skipped", f"step already {send.status}")


def _mark_unknown(
    session: Session, enrollment: Enrollment, send: Send, why: str, now: datetime
) -> None:
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
        enrollments.pause(
            session,
            enrollment,
            f"step {send.step} may have been sent ({why}); resume skips it",
            now,
        )


def _locked_pair(session: Session, prepared: Prepared) -> tuple[Send, Enrollment]:
    send = session.get(Send, prepared.send_id, with_for_update=True)
    enrollment = _lock(session, prepared.enrollment_id)
    assert send is not None and enrollment is not None
    return send, enrollment


def record_sent(app: App, prepared: Prepared, now: datetime) -> Outcome:
    """The server took the message: record it and move the enrollment on."""
    with transaction(app.engine) as session:
        send, enrollment = _locked_pair(session, prepared)
        send.status = SendStatus.SENT
        send.sent_at = now
        events.for_enrollment(
            session,
            enrollment,
            EventType.SENT,
            now,
            step=send.step,
            template=send.template,
            message_id=send.message_id,
        )
        if enrollment.state == EnrollmentState.ACTIVE and enrollment.step == send.step:
            prospect = session.get(Prospect, enrollment.prospect_id)
            assert prospect is not None
            sequence = app.versions.load(session, enrollment.version_id)
            enrollments.advance(session, sequence, enrollment, prospect, now)
    return Outcome("sent", prepared.message_id)


def record_transient(app: App, prepared: Prepared, exc: TransientSendError, now: datetime) -> None:
    """Not taken this time: retry later, or fail the step after too many attempts."""
    with transaction(app.engine) as session:
        send, enrollment = _locked_pair(session, prepared)
        send.error = str(exc)
        send.code = getattr(exc, "code", None)
        if send.attempts >= app.settings.max_send_attempts:
            _fail(session, enrollment, send, f"gave up after {send.attempts} attempts: {exc}", now)
            return
        send.status = SendStatus.DEFERRED
        if enrollment.state == EnrollmentState.ACTIVE and enrollment.step == send.step:
            enrollment.next_run_at = now + backoff(send.attempts)


def backoff(attempts: int) -> timedelta:
    """How long to wait after a transient failure: doubles from one minute up to an hour."""
    return timedelta(minutes=min(60, 2 ** max(0, attempts - 1)))


def record_failed(app: App, prepared: Prepared, exc: PermanentSendError, now: datetime) -> Outcome:
    """Refused for good: keep the server's answer and stop the enrollment."""
    with transaction(app.engine) as session:
        send, enrollment = _locked_pair(session, prepared)
        send.code = getattr(exc, "code", None)
        _fail(session, enrollment, send, str(exc), now)
    return Outcome("failed", str(exc))


def _fail(session: Session, enrollment: Enrollment, send: Send, why: str, now: datetime) -> None:
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
        _mark_unknown(session, enrollment, send, why, now)
    return Outcome("unknown", why)
