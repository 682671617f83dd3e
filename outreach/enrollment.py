"""Enrolling prospects, and pausing, resuming and stopping their enrollments."""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import claims, events, versions
from outreach.errors import EnrollmentRefused, InputError
from outreach.models import (
    OPEN_STATES,
    Enrollment,
    EnrollmentState,
    EventType,
    Meta,
    Prospect,
    Send,
    SendStatus,
)
from outreach.schedule import due_at, next_opening
from outreach.sequence import Sequence
from outreach.suppression import is_suppressed


def open_enrollments(
    session: Session, prospect_id: int, sequence_id: str | None = None
) -> list[Enrollment]:
    """The prospect's active and paused enrollments, optionally in one sequence."""
    query = select(Enrollment).where(
        Enrollment.prospect_id == prospect_id,
        Enrollment.state.in_(OPEN_STATES),  # type: ignore[attr-defined]
    )
    if sequence_id:
        query = query.where(Enrollment.sequence_id == sequence_id)
    # the lock order batches use (by id): no deadlock between a stop and a send
    return list(session.scalars(query.order_by(col(Enrollment.id)).with_for_update()))


def refusal(session: Session, sequence: Sequence, prospect: Prospect) -> str | None:
    """Why this prospect may not be enrolled in this sequence, or None."""
    if is_suppressed(session, prospect.email):
        return f"{prospect.email} is suppressed"
    assert prospect.id is not None
    for other in open_enrollments(session, prospect.id):
        if other.sequence_id == sequence.id:
            return f"{prospect.email} is already {other.state} in {sequence.id}"
        if sequence.exclusive and other.exclusive:
            return f"{prospect.email} is already in exclusive sequence {other.sequence_id}"
    return None


def next_sender(session: Session, sequence: Sequence) -> str:
    """The sequence's next `from` address in rotation: new enrollments take turns."""
    addresses = sequence.sender.addresses
    if len(addresses) == 1:
        return addresses[0]
    key = f"rotation:{sequence.id}"
    row = session.get(Meta, key, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(Meta(key=key, value="0"))
        except sa.exc.IntegrityError:
            pass  # created by a concurrent enrollment: take turns with it
        row = session.get_one(Meta, key, with_for_update=True)
    turn = int(row.value)
    row.value = str(turn + 1)
    return addresses[turn % len(addresses)]


def enroll(
    session: Session,
    sequence: Sequence,
    prospect: Prospect,
    now: datetime,
    owner: str | None = None,
) -> Enrollment:
    """Enroll one prospect, or EnrollmentRefused saying why not."""
    reason = refusal(session, sequence, prospect)
    if reason:
        raise EnrollmentRefused(reason)
    version = versions.store(session, sequence, now)
    first = sequence.steps[0]
    tz = sequence.schedule.zone(prospect.timezone)
    assert prospect.id is not None and version.id is not None
    enrollment = Enrollment(
        prospect_id=prospect.id,
        sequence_id=sequence.id,
        version_id=version.id,
        state=EnrollmentState.ACTIVE,
        step=1,
        next_run_at=due_at(now, first.waits, sequence.schedule, tz),
        sender=next_sender(session, sequence),
        owner=owner or prospect.owner,
        exclusive=sequence.exclusive,
        enrolled_at=now,
        updated_at=now,
    )
    session.add(enrollment)
    session.flush()
    events.for_enrollment(session, enrollment, EventType.ENROLLED, now, step=None)
    return enrollment


def variant(options: list[str], enrollment_id: int, step: int) -> str:
    """The A/B variant of a step for an enrollment: stable, evenly spread."""
    if len(options) == 1:
        return options[0]
    digest = hashlib.sha256(f"{enrollment_id}:{step}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def pause(session: Session, enrollment: Enrollment, reason: str, now: datetime) -> None:
    """Hold an enrollment until someone resumes it."""
    enrollment.state = EnrollmentState.PAUSED
    enrollment.next_run_at = None
    enrollment.resume_at = None
    enrollment.reason = reason
    enrollment.updated_at = now
    events.for_enrollment(session, enrollment, EventType.PAUSED, now, reason=reason)


def resume(session: Session, sequence: Sequence, enrollment: Enrollment, now: datetime) -> None:
    """Continue a paused enrollment at the window's next opening.

    A step whose send ended `unknown` may have been delivered, so it is skipped, never resent.
    """
    if enrollment.state != EnrollmentState.PAUSED:
        raise InputError(
            f"enrollment in {enrollment.sequence_id} is {enrollment.state}, not paused"
        )
    send = session.scalar(
        select(Send).where(Send.enrollment_id == enrollment.id, Send.step == enrollment.step)
    )
    skipped_at = None
    if send is not None and send.status == SendStatus.UNKNOWN:
        enrollment.step += 1
        skipped_at = send.started_at or send.created_at
    enrollment.state = EnrollmentState.ACTIVE
    enrollment.reason = None
    enrollment.resume_at = None
    enrollment.updated_at = now
    events.for_enrollment(session, enrollment, EventType.RESUMED, now)
    if enrollment.step > len(sequence.steps):
        finish(enrollment, now)
        return
    prospect = session.get(Prospect, enrollment.prospect_id)
    tz = sequence.schedule.zone(prospect.timezone if prospect else None)
    due = next_opening(now, sequence.schedule, tz)
    if skipped_at is not None:
        # the skipped step may have reached the prospect: the next one keeps its wait
        waits = sequence.step(enrollment.step).waits
        due = max(due, due_at(skipped_at, waits, sequence.schedule, tz))
    enrollment.next_run_at = due
    assert enrollment.id is not None
    claims.release(session, enrollment.id)


def stop(session: Session, enrollment: Enrollment, reason: str, now: datetime) -> None:
    """End an enrollment by hand."""
    enrollment.state = EnrollmentState.STOPPED
    enrollment.next_run_at = None
    enrollment.resume_at = None
    enrollment.reason = reason
    enrollment.updated_at = now


def finish(enrollment: Enrollment, now: datetime) -> None:
    """Mark an enrollment that ran all its steps."""
    enrollment.state = EnrollmentState.FINISHED
    enrollment.next_run_at = None
    enrollment.updated_at = now


def advance(
    session: Session, sequence: Sequence, enrollment: Enrollment, prospect: Prospect, now: datetime
) -> None:
    """Move past the current step; the next one is due after its waits, in the window."""
    enrollment.step += 1
    enrollment.last_step_at = now
    enrollment.updated_at = now
    if enrollment.step > len(sequence.steps):
        finish(enrollment, now)
        return
    nxt = sequence.step(enrollment.step)
    tz = sequence.schedule.zone(prospect.timezone)
    enrollment.next_run_at = due_at(now, nxt.waits, sequence.schedule, tz)
