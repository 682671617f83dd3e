"""The call queue: tasks for reps, most engaged prospects first, and their outcomes."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import enrollment as enrollments
from outreach import events
from outreach.errors import UnknownCall
from outreach.models import (
    CallTask,
    Enrollment,
    EnrollmentState,
    EventType,
    Prospect,
    Send,
    SendStatus,
)


class CallOutcome(StrEnum):
    """How a call went."""

    MEETING = "meeting"
    CALLBACK = "callback"
    NO_ANSWER = "no_answer"
    NOT_INTERESTED = "not_interested"


def queue(session: Session, owner: str | None = None) -> list[dict[str, Any]]:
    """Open call tasks, most engaged prospect first, then the oldest due."""
    query = (
        select(CallTask, Prospect)
        .join(Prospect, col(Prospect.id) == col(CallTask.prospect_id))
        .where(CallTask.status == "open")
        .order_by(col(Prospect.score).desc(), col(CallTask.due_at), col(CallTask.id))
    )
    if owner:
        query = query.where(CallTask.owner == owner)
    return [_row(task, person) for task, person in session.execute(query)]


def _row(task: CallTask, person: Prospect) -> dict[str, Any]:
    return {
        "id": task.id,
        "email": person.email,
        "sequence": task.sequence_id,
        "reason": task.reason,
        "due_at": task.due_at.isoformat(),
        "owner": task.owner,
        "note": task.note,
        "score": person.score,
    }


def complete(
    session: Session,
    task_id: int,
    outcome: CallOutcome,
    now: datetime,
    *,
    handoff: str | None = None,
    callback_at: datetime | None = None,
) -> CallTask:
    """Record a call: a meeting ends the sequence as booked, a callback re-queues the task."""
    task = session.get(CallTask, task_id, with_for_update=True)
    if task is None or task.status != "open":
        raise UnknownCall(f"no open call task {task_id}")
    enrollment = session.get(Enrollment, task.enrollment_id) if task.enrollment_id else None
    events.record(
        session,
        EventType.CALL_DONE,
        now,
        prospect_id=task.prospect_id,
        enrollment=enrollment,
        step=task.step,
        outcome=str(outcome),
    )
    if outcome == CallOutcome.CALLBACK:
        task.due_at = callback_at or now + timedelta(days=1)
        return task
    task.status, task.outcome, task.done_at = "done", str(outcome), now
    if outcome == CallOutcome.MEETING:
        _book(session, task, enrollment, now, handoff)
    elif (
        outcome == CallOutcome.NOT_INTERESTED
        and enrollment
        and enrollment.state in ("active", "paused")
    ):
        enrollments.stop(session, enrollment, "not interested (call)", now)
    return task


def _book(
    session: Session,
    task: CallTask,
    enrollment: Enrollment | None,
    now: datetime,
    handoff: str | None,
) -> None:
    step = task.step
    if enrollment is not None:
        step = _last_sent_step(session, enrollment) or task.step
        if enrollment.state in (EnrollmentState.ACTIVE, EnrollmentState.PAUSED):
            enrollment.state = EnrollmentState.MEETING_BOOKED
            enrollment.next_run_at = None
            enrollment.updated_at = now
        if handoff:
            enrollment.owner = handoff
    if handoff:
        person = session.get(Prospect, task.prospect_id)
        assert person is not None
        person.owner = handoff
    events.record(
        session,
        EventType.MEETING_BOOKED,
        now,
        prospect_id=task.prospect_id,
        enrollment=enrollment,
        step=step,
        handoff=handoff,
    )


def _last_sent_step(session: Session, enrollment: Enrollment) -> int | None:
    return session.scalar(
        select(sa.func.max(Send.step)).where(
            Send.enrollment_id == enrollment.id, Send.status == SendStatus.SENT
        )
    )
