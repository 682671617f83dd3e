"""Failed and unknown sends: list them, and re-open one step by hand so it is sent again.

A failed send was refused for good (a 5xx) and ended its enrollment; an unknown send may
have been delivered (the connection broke after the data went out) and paused its
enrollment. Neither is ever retried by the engine. A person who has fixed the cause (the
address, the server, the template) re-opens the step here: its ledger row is removed so the
step can be reserved afresh, and the enrollment is made active at that step, due at the
window's next opening. The previous attempt is kept in a `resumed` event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import claims, events, versions
from outreach.errors import InputError
from outreach.models import (
    OPEN_STATES,
    Enrollment,
    EnrollmentState,
    EventType,
    Prospect,
    Send,
    SendStatus,
)
from outreach.schedule import next_opening
from outreach.suppression import is_suppressed

LISTED = (SendStatus.FAILED, SendStatus.UNKNOWN)
# an enrollment in one of these states may have a step re-opened
RETRYABLE_STATES = (EnrollmentState.FAILED, EnrollmentState.PAUSED, EnrollmentState.ACTIVE)


class RetryRefused(InputError):
    """This send may not be retried: the message says why."""


def listing(
    session: Session, status: SendStatus | str | None = None, sequence: str | None = None
) -> list[dict[str, Any]]:
    """Failed and unknown sends, newest first, as plain dicts."""
    wanted = [SendStatus(status)] if status else list(LISTED)
    if any(s not in LISTED for s in wanted):
        raise InputError(f"--status is failed or unknown, not {status}")
    query = (
        select(Send, Enrollment.sequence_id)
        .join(Enrollment, col(Enrollment.id) == col(Send.enrollment_id))
        .where(col(Send.status).in_(wanted))
    )
    if sequence:
        query = query.where(Enrollment.sequence_id == sequence)
    newest = sa.func.coalesce(col(Send.started_at), col(Send.created_at))
    query = query.order_by(newest.desc(), col(Send.id).desc())
    return [
        {
            "id": send.id,
            "email": send.to_email,
            "sequence": sequence_id,
            "step": send.step,
            "status": str(send.status),
            "code": send.code,
            "error": send.error,
            "started_at": (send.started_at or send.created_at).isoformat(),
            "enrollment_id": send.enrollment_id,
        }
        for send, sequence_id in session.execute(query)
    ]


def retry(session: Session, send_id: int, now: datetime, *, resend: bool = False) -> Enrollment:
    """Re-open the step of a failed or unknown send; RetryRefused says why not.

    `resend` must be given for an unknown send: that message may already have arrived.
    """
    send = session.scalar(select(Send).where(Send.id == send_id).with_for_update())
    if send is None:
        raise RetryRefused(f"no send {send_id}")
    if send.status not in LISTED:
        raise RetryRefused(f"send {send_id} is {send.status}: only failed or unknown sends retry")
    if send.status == SendStatus.UNKNOWN and not resend:
        raise RetryRefused(
            f"send {send_id} to {send.to_email} is unknown: it may have been delivered; "
            "pass --yes-resend to send it again anyway"
        )
    enrollment = session.scalar(
        select(Enrollment).where(Enrollment.id == send.enrollment_id).with_for_update()
    )
    assert enrollment is not None and enrollment.id is not None
    prospect = session.get(Prospect, enrollment.prospect_id)
    assert prospect is not None
    _check(session, send, enrollment, prospect)
    sequence = versions.VersionCache().load(session, enrollment.version_id)
    tz = sequence.schedule.zone(prospect.timezone)
    previous = {
        "retry_of": send.id,
        "previous_status": str(send.status),
        "previous_message_id": send.message_id,
        "previous_error": send.error,
    }
    session.delete(send)
    session.flush()
    enrollment.state = EnrollmentState.ACTIVE
    enrollment.step = send.step
    enrollment.reason = None
    enrollment.resume_at = None
    enrollment.next_run_at = next_opening(now, sequence.schedule, tz)
    enrollment.updated_at = now
    events.for_enrollment(session, enrollment, EventType.RESUMED, now, **previous)
    claims.release(session, enrollment.id)
    return enrollment


def _check(session: Session, send: Send, enrollment: Enrollment, prospect: Prospect) -> None:
    who = f"{prospect.email} in {enrollment.sequence_id}"
    for email in {prospect.email, send.to_email}:
        if is_suppressed(session, email):
            raise RetryRefused(f"{email} is suppressed: it is never mailed again")
    if enrollment.state not in RETRYABLE_STATES:
        raise RetryRefused(f"the enrollment of {who} is {enrollment.state}: nothing to re-open")
    if enrollment.step != send.step:
        raise RetryRefused(
            f"the enrollment of {who} has moved on to step {enrollment.step}; "
            f"step {send.step} is not re-opened behind it"
        )
    if enrollment.state not in OPEN_STATES:
        other = session.scalar(
            select(Enrollment.id).where(
                Enrollment.prospect_id == enrollment.prospect_id,
                Enrollment.sequence_id == enrollment.sequence_id,
                col(Enrollment.state).in_(OPEN_STATES),
                Enrollment.id != enrollment.id,
            )
        )
        if other is not None:
            raise RetryRefused(f"{who} has another open enrollment ({other}) in that sequence")
