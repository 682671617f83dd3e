"""The suppression list: addresses that are never mailed again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import events
from outreach.models import (
    OPEN_STATES,
    Enrollment,
    EnrollmentState,
    EventType,
    Prospect,
    Suppression,
)


def is_suppressed(session: Session, email: str) -> bool:
    """True when the address is on the suppression list."""
    return session.get(Suppression, email) is not None


def suppress(
    session: Session,
    prospect: Prospect,
    reason: str,
    now: datetime,
    state: EnrollmentState = EnrollmentState.UNSUBSCRIBED,
    event: EventType = EventType.UNSUBSCRIBED,
    *,
    enrollment: Enrollment | None = None,
    step: int | None = None,
    **data: Any,
) -> int:
    """Suppress the address and end every open enrollment; returns how many ended.

    The event is credited to `enrollment` and `step` when the cause answered a message.
    """
    if not is_suppressed(session, prospect.email):
        try:
            with session.begin_nested():
                session.add(Suppression(email=prospect.email, reason=reason, created_at=now))
        except sa.exc.IntegrityError:
            pass  # suppressed at the same moment by another cause: suppressed either way
    assert prospect.id is not None
    ended = end_open(session, prospect.id, state, reason, now)
    events.record(
        session,
        event,
        now,
        prospect_id=prospect.id,
        enrollment=enrollment,
        step=step,
        reason=reason,
        **data,
    )
    return ended


def end_open(
    session: Session, prospect_id: int, state: EnrollmentState, reason: str, now: datetime
) -> int:
    """Move every open enrollment of a prospect to a final state."""
    query = (
        select(Enrollment)
        .where(Enrollment.prospect_id == prospect_id, Enrollment.state.in_(OPEN_STATES))  # type: ignore[attr-defined]
        .order_by(col(Enrollment.id))  # the lock order batches use: no deadlock
        .with_for_update()
    )
    ended = 0
    for enrollment in session.scalars(query):
        enrollment.state = state
        enrollment.next_run_at = None
        enrollment.resume_at = None
        enrollment.reason = reason
        enrollment.updated_at = now
        ended += 1
    return ended
