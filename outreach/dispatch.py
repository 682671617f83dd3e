"""Claiming due steps and running one step: the at-most-once path from database to SMTP.

A step runs in three parts. First, under a lock on the enrollment, everything is checked
again (state, step, suppression, window, sender limits), the email is rendered and the
send is reserved in the ledger; that is committed before any SMTP is spoken. Then the
message is handed to the mailer. Last, the outcome is recorded and the enrollment moves on.
A worker killed between the first and the last part leaves a 'sending' row behind, which
the next attempt turns into 'unknown' rather than sending again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

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
    Event,
    EventType,
    Prospect,
    Send,
    SendStatus,
    Suppression,
)
from outreach.schedule import due_at, is_open, next_opening
from outreach.sequence import Sequence, Step

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
    prospect_id: int
    sequence_id: str
    template: str
    next_run_at: Callable[[datetime], datetime | None]


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
        fast = _prepare_fast(app, session, enrollment_id, step, now)
        if fast is not None:
            return fast
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
            return Outcome("deferred", "outside the sending window")
        current = sequence.step(step)
        if current.kind != "email":
            return _create_task(app, session, sequence, current, enrollment, prospect, now)
        return _prepare_email(app, session, sequence, current, enrollment, prospect, now)


_E = Enrollment.__table__  # type: ignore[attr-defined]
_P = Prospect.__table__  # type: ignore[attr-defined]
_S = Send.__table__  # type: ignore[attr-defined]
_FAST_LOAD = (
    sa.select(
        _E.c.state,
        _E.c.step,
        _E.c.version_id,
        _E.c.sender,
        _E.c.prospect_id,
        *(
            _P.c[name]
            for name in (
                "email",
                "first_name",
                "last_name",
                "company",
                "title",
                "phone",
                "timezone",
                "fields",
            )
        ),
        sa.exists().where(Suppression.__table__.c.email == _P.c.email).label("suppressed"),  # type: ignore[attr-defined]
        _S.c.id.label("send_id"),
        _S.c.status.label("send_status"),
    )
    .select_from(
        _E.join(_P, _P.c.id == _E.c.prospect_id).outerjoin(
            _S, sa.and_(_S.c.enrollment_id == _E.c.id, _S.c.step == _E.c.step)
        )
    )
    .where(_E.c.id == sa.bindparam("id"))
    .with_for_update(of=_E)
)
_LEASE = (
    sa.update(_E).where(_E.c.id == sa.bindparam("eid")).values(next_run_at=sa.bindparam("until"))
)


def _prepare_fast(
    app: App, session: Session, enrollment_id: int, step: int, now: datetime
) -> Prepared | None:
    """The common case in few statements and no ORM objects; None hands over to the full path.

    Anything unusual (a stop, a suppressed address, a task step, the window closed, a send
    already in the ledger, a missing variable, a sender at its limit) returns None, and
    `prepare` goes on with the full checks under the same lock.
    """
    connection = session.connection()
    row = connection.execute(_FAST_LOAD, {"id": enrollment_id}).first()
    if row is None or row.state != EnrollmentState.ACTIVE or row.step != step or row.suppressed:
        return None
    if row.send_status not in (None, SendStatus.DEFERRED):
        return None
    sequence = app.versions.load(session, row.version_id)
    if step > len(sequence.steps) or sequence.step(step).kind != "email":
        return None
    tz = sequence.schedule.zone(row.timezone)
    if not is_open(now, sequence.schedule, tz):
        return None
    current = sequence.step(step)
    prospect = Prospect.model_construct(
        id=row.prospect_id,
        email=row.email,
        first_name=row.first_name,
        last_name=row.last_name,
        company=row.company,
        title=row.title,
        phone=row.phone,
        timezone=row.timezone,
        fields=row.fields or {},
    )
    template = enrollments.variant(current.templates, enrollment_id, step)
    earlier = ledger.thread(session, enrollment_id, step) if current.thread else []
    try:
        composed = compose(
            renderer=app.renderer,
            secret=app.secret,
            base_url=app.settings.base_url,
            sequence=sequence,
            step=current,
            template=template,
            prospect=prospect,
            sender=row.sender,
            enrollment_id=enrollment_id,
            earlier=earlier,
            now=now,
        )
    except RenderError:
        return None
    if sequence.schedule.daily_limit or sequence.schedule.hourly_limit:
        limits.lock_sender(session, composed.sender_email)
        if limits.free_at(session, composed.sender_email, sequence.schedule, now) is not None:
            return None
    existing = session.get(Send, row.send_id) if row.send_id else None
    send_id = ledger.reserve(session, existing, composed, enrollment_id, step, now)
    inflight = now + timedelta(seconds=app.settings.send_inflight_seconds)
    connection.execute(_LEASE, {"eid": enrollment_id, "until": inflight})
    return Prepared(
        send_id=send_id,
        enrollment_id=enrollment_id,
        step=step,
        envelope_from=composed.sender_email,
        recipient=row.email,
        message_id=composed.email.message_id,
        data=build_message(composed.email, app.dkim),
        prospect_id=row.prospect_id,
        sequence_id=sequence.id,
        template=composed.template,
        next_run_at=functools.partial(_next_due, sequence, step, tz),
    )


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
    tz = sequence.schedule.zone(prospect.timezone)
    if sequence.schedule.daily_limit or sequence.schedule.hourly_limit:
        limits.lock_sender(session, composed.sender_email)
        free = limits.free_at(session, composed.sender_email, sequence.schedule, now)
        if free is not None:
            enrollment.next_run_at = next_opening(free, sequence.schedule, tz)
            return Outcome("deferred", f"{composed.sender_email} is at its sending limit")
    send_id = ledger.reserve(session, existing, composed, enrollment.id, step.number, now)
    # while the send is in flight, the scheduler must not hand the step out again
    inflight = now + timedelta(seconds=app.settings.send_inflight_seconds)
    session.execute(
        sa.update(Enrollment)
        .where(col(Enrollment.id) == enrollment.id)
        .values(next_run_at=inflight)
    )
    assert prospect.id is not None
    return Prepared(
        send_id=send_id,
        enrollment_id=enrollment.id,
        step=step.number,
        envelope_from=composed.sender_email,
        recipient=prospect.email,
        message_id=composed.email.message_id,
        data=build_message(composed.email, app.dkim),
        prospect_id=prospect.id,
        sequence_id=sequence.id,
        template=composed.template,
        next_run_at=functools.partial(_next_due, sequence, step.number, tz),
    )


def _next_due(sequence: Sequence, number: int, tz: ZoneInfo, sent_at: datetime) -> datetime | None:
    """When the step after `number` is due if this one went out at `sent_at`; None at the end."""
    if number >= len(sequence.steps):
        return None
    return due_at(sent_at, sequence.step(number + 1).waits, sequence.schedule, tz)


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


_MARK_SENT = (
    sa.update(_S)
    .where(_S.c.id == sa.bindparam("sid"))
    .values(status=SendStatus.SENT, sent_at=sa.bindparam("at"))
)
_MOVE_ON = (
    sa.update(_E)
    .where(
        _E.c.id == sa.bindparam("eid"),
        _E.c.state == EnrollmentState.ACTIVE,
        _E.c.step == sa.bindparam("current"),
    )
    .values(
        step=sa.bindparam("next_step"),
        last_step_at=sa.bindparam("at"),
        updated_at=sa.bindparam("at"),
        next_run_at=sa.bindparam("following"),
        state=sa.bindparam("state"),
    )
)
_ADD_EVENT = sa.insert(Event.__table__)  # type: ignore[attr-defined]


def record_sent(app: App, prepared: Prepared, now: datetime) -> Outcome:
    """The server took the message: record it and move the enrollment on.

    Three prepared statements and no ORM: this runs once per email, on the hot path. The
    enrollment moves on only if nothing (a reply, a stop) changed it while the message was
    in flight.
    """
    following = prepared.next_run_at(now)
    state = EnrollmentState.ACTIVE if following else EnrollmentState.FINISHED
    with app.engine.begin() as connection:
        connection.execute(
            _MARK_SENT.values(status=SendStatus.SENT, sent_at=sa.bindparam("at")),
            {"sid": prepared.send_id, "at": now},
        )
        connection.execute(
            _MOVE_ON.values(
                step=prepared.step + 1,
                last_step_at=now,
                updated_at=now,
                next_run_at=following,
                state=state,
            ),
            {"eid": prepared.enrollment_id, "current": prepared.step},
        )
        connection.execute(
            _ADD_EVENT,
            {
                "prospect_id": prepared.prospect_id,
                "enrollment_id": prepared.enrollment_id,
                "sequence_id": prepared.sequence_id,
                "step": prepared.step,
                "type": EventType.SENT,
                "at": now,
                "data": {"template": prepared.template, "message_id": prepared.message_id},
            },
        )
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
