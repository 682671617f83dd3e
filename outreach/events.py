"""Recording what happened to a prospect."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from outreach.models import Enrollment, Event, EventType


def record(
    session: Session,
    type_: EventType,
    at: datetime,
    *,
    prospect_id: int,
    enrollment: Enrollment | None = None,
    step: int | None = None,
    **data: Any,
) -> Event:
    """Add one event to the prospect's timeline."""
    event = Event(
        prospect_id=prospect_id,
        enrollment_id=enrollment.id if enrollment else None,
        sequence_id=enrollment.sequence_id if enrollment else None,
        step=step,
        type=type_,
        at=at,
        data={k: v for k, v in data.items() if v is not None},
    )
    session.add(event)
    return event


def for_enrollment(
    session: Session, enrollment: Enrollment, type_: EventType, at: datetime, **data: Any
) -> Event:
    """Add an event about an enrollment, at its current step unless told otherwise."""
    step = data.pop("step", enrollment.step)
    return record(
        session,
        type_,
        at,
        prospect_id=enrollment.prospect_id,
        enrollment=enrollment,
        step=step,
        **data,
    )
