"""The send ledger: a row per (enrollment, step) reserved before SMTP, so nothing goes twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import bulk
from outreach.compose import Composed
from outreach.models import Send, SendStatus

COUNTED = (SendStatus.SENDING, SendStatus.SENT, SendStatus.UNKNOWN)


def find(session: Session, enrollment_id: int, step: int) -> Send | None:
    """The ledger row of one step, if any."""
    query = select(Send).where(Send.enrollment_id == enrollment_id, Send.step == step)
    return session.scalar(query.with_for_update())


def thread(session: Session, enrollment_id: int, before: int) -> list[Send]:
    """The sent messages of an enrollment before a step, oldest first, for threading."""
    query = (
        select(Send)
        .where(
            Send.enrollment_id == enrollment_id,
            Send.step < before,
            Send.status.in_((SendStatus.SENT, SendStatus.UNKNOWN)),  # type: ignore[attr-defined]
        )
        .order_by(col(Send.step))
    )
    return list(session.scalars(query))


HAND = (
    sa.update(Send)
    .where(col(Send.id).in_(sa.bindparam("ids", expanding=True)))
    .where(col(Send.status) == SendStatus.SENDING, ~col(Send.handed))
    .values(handed=True)
    .returning(col(Send.id))
)


HAND_PG = """
UPDATE send SET handed = true
WHERE id = ANY(%(ids)s::int[]) AND status = 'sending' AND NOT handed
RETURNING id
"""


def hand(engine: sa.Engine, send_ids: list[int]) -> set[int]:
    """Mark reserved sends as handed to the mail server, committed before SMTP begins.

    Returns the ids marked. One left out cannot be: another worker took the reservation
    over (or handed it) after this one was judged cut off. Of two such workers only one
    marks it, so a send is handed to the server once; one cut off before its mark is known
    never to have left, and is sent again instead of being judged unknown.
    """
    if not send_ids:
        return set()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # on the hot path: no statement to compile
            return {row[0] for row in bulk.run(connection, HAND_PG, {"ids": send_ids})}
        return set(connection.scalars(HAND, {"ids": send_ids}))


def reusable(send: Send, now: datetime, inflight_seconds: int) -> bool:
    """Whether a step's ledger row may be reserved again and sent.

    A deferred row was refused for now; a 'sending' row that was never handed to the mail
    server and is no longer in flight was cut off before anything left.
    """
    if send.status == SendStatus.DEFERRED:
        return True
    return (
        send.status == SendStatus.SENDING
        and not send.handed
        and not in_flight(send, now, inflight_seconds)
    )


def in_flight(send: Send, now: datetime, inflight_seconds: int) -> bool:
    """A 'sending' row younger than the in-flight limit belongs to a live worker."""
    started = send.started_at or send.created_at
    return now - started < timedelta(seconds=inflight_seconds)


def reserve(
    session: Session,
    existing: Send | None,
    composed: Composed,
    enrollment_id: int,
    step: int,
    now: datetime,
) -> int:
    """Mark the step as being sent, creating its row or taking over a deferred one."""
    values: dict[str, Any] = {
        "status": SendStatus.SENDING,
        "template": composed.template,
        "subject": composed.email.subject,
        "sender_email": composed.sender_email,
        "started_at": now,
        "handed": False,
    }
    if existing is not None:
        session.connection().execute(
            sa.update(Send)
            .where(col(Send.id) == existing.id)
            .values(attempts=Send.attempts + 1, **values)
        )
        assert existing.id is not None
        return existing.id
    insert = sa.insert(Send).values(
        enrollment_id=enrollment_id,
        step=step,
        message_id=composed.email.message_id,
        to_email=composed.email.to_email,
        attempts=1,
        created_at=now,
        **values,
    )
    new_id: int = session.connection().execute(insert.returning(col(Send.id))).scalar_one()  # type: ignore[assignment]
    return new_id


def recent_count(session: Session, sender_email: str, since: datetime) -> int:
    """How many messages a sender address started (sent, sending, unknown) since a moment.

    Counted by when each was started, not reserved: a send deferred yesterday and sent
    today counts today.
    """
    query = select(sa.func.count()).where(
        Send.sender_email == sender_email,
        Send.started_at > since,  # type: ignore[operator]
        Send.status.in_(COUNTED),  # type: ignore[attr-defined]
    )
    return session.scalar(query) or 0


def nth_since(session: Session, sender_email: str, since: datetime, offset: int) -> datetime:
    """When the sender's (offset+1)-th counted message since a moment was started."""
    query = (
        select(Send.started_at)
        .where(
            Send.sender_email == sender_email,
            Send.started_at > since,  # type: ignore[operator]
            Send.status.in_(COUNTED),  # type: ignore[attr-defined]
        )
        .order_by(col(Send.started_at))
        .offset(offset)
        .limit(1)
    )
    value = session.scalar(query)
    assert value is not None
    return value
