"""The common case of a send, for one step or a batch: a few statements and no ORM objects.

Everything unusual (a stop, a suppressed address, a task step, the window closed, a send
already in the ledger, a missing variable, a sender at its limit) is left to the full path
in `dispatch`, which handles it one enrollment at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from outreach import bulk, ledger, limits
from outreach import enrollment as enrollments
from outreach.app import App
from outreach.compose import Composed, compose
from outreach.errors import RenderError
from outreach.message import build_message
from outreach.models import Enrollment, EnrollmentState, Prospect, Send, SendStatus, Suppression
from outreach.schedule import due_at, is_open
from outreach.sequence import Sequence

E = Enrollment.__table__  # type: ignore[attr-defined]
P = Prospect.__table__  # type: ignore[attr-defined]
S = Send.__table__  # type: ignore[attr-defined]
PROSPECT_COLUMNS = ("email", "first_name", "last_name", "company", "title", "phone", "timezone")

LOAD = (
    sa.select(
        E.c.id,
        E.c.state,
        E.c.step,
        E.c.version_id,
        E.c.sender,
        E.c.prospect_id,
        *(P.c[name] for name in PROSPECT_COLUMNS),
        P.c.fields,
        sa.exists()
        .where(Suppression.__table__.c.email == P.c.email)  # type: ignore[attr-defined]
        .label("suppressed"),
        S.c.id.label("send_id"),
        S.c.status.label("send_status"),
    )
    .select_from(
        E.join(P, P.c.id == E.c.prospect_id).outerjoin(
            S, sa.and_(S.c.enrollment_id == E.c.id, S.c.step == E.c.step)
        )
    )
    .where(E.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(E.c.id)  # the same lock order everywhere: no deadlocks between batches
    .with_for_update(of=E)
)
INSERT_SEND = sa.insert(S).returning(S.c.id, S.c.enrollment_id)


@dataclass(frozen=True)
class Prepared:
    """A reserved send, ready to hand to the mailer, with what recording it needs."""

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
    sequence: Sequence
    tz: ZoneInfo

    def next_run_at(self, sent_at: datetime) -> datetime | None:
        """When the following step is due if this one went out at `sent_at`; None at the end."""
        return next_due(self.sequence, self.step, self.tz, sent_at)


def next_due(sequence: Sequence, number: int, tz: ZoneInfo, sent_at: datetime) -> datetime | None:
    """When the step after `number` is due; None when `number` was the last."""
    if number >= len(sequence.steps):
        return None
    return due_at(sent_at, sequence.step(number + 1).waits, sequence.schedule, tz)


@dataclass(frozen=True)
class Draft:
    """A step that passed every check and rendered, not yet reserved."""

    enrollment_id: int
    step: int
    row: Any
    sequence: Sequence
    tz: ZoneInfo
    composed: Composed
    data: bytes


def load(session: Session, ids: Seq[int]) -> dict[int, Any]:
    """The enrollments (locked, in id order) with their prospects and ledger rows."""
    rows = session.connection().execute(LOAD, {"ids": list(ids)})
    return {row.id: row for row in rows}


def draft(app: App, session: Session, row: Any, step: int, now: datetime) -> Draft | None:
    """Check one loaded enrollment and render its email; None when the full path must decide."""
    if row.state != EnrollmentState.ACTIVE or row.step != step or row.suppressed:
        return None
    if row.send_status not in (None, SendStatus.DEFERRED):
        return None
    sequence = app.versions.load(session, row.version_id)
    if step > len(sequence.steps) or sequence.step(step).kind != "email":
        return None
    tz = sequence.schedule.zone(row.timezone)
    if not is_open(now, sequence.schedule, tz):
        return None
    composed = _compose(app, session, sequence, row, step, now)
    if composed is None:
        return None
    try:
        data = build_message(composed.email, app.dkim)
    except ValueError:
        return None  # the full path pauses the enrollment with the reason
    return Draft(row.id, step, row, sequence, tz, composed, data)


def _compose(
    app: App, session: Session, sequence: Sequence, row: Any, step: int, now: datetime
) -> Composed | None:
    current = sequence.step(step)
    values = {name: getattr(row, name) for name in PROSPECT_COLUMNS}
    prospect = Prospect.model_construct(id=row.prospect_id, fields=row.fields or {}, **values)
    earlier = ledger.thread(session, row.id, step) if current.thread else []
    try:
        return compose(
            app,
            sequence=sequence,
            step=current,
            template=enrollments.variant(current.templates, row.id, step),
            prospect=prospect,
            sender=row.sender,
            enrollment_id=row.id,
            earlier=earlier,
            now=now,
        )
    except RenderError:
        return None


def within_limits(
    session: Session, drafts: list[Draft], now: datetime
) -> tuple[list[Draft], list[Draft]]:
    """Split drafts into those their sender may send now and those over a limit."""
    groups: dict[str, list[Draft]] = defaultdict(list)
    allowed: list[Draft] = []
    for item in drafts:
        schedule = item.sequence.schedule
        if schedule.daily_limit or schedule.hourly_limit:
            groups[item.composed.sender_email].append(item)
        else:
            allowed.append(item)
    over: list[Draft] = []
    for sender, items in sorted(groups.items()):
        limits.lock_sender(session, sender)
        room = min(limits.room(session, sender, d.sequence.schedule, now) for d in items)
        allowed += items[:room]
        over += items[room:]
    return allowed, over


def reserve(session: Session, drafts: list[Draft], now: datetime) -> list[int]:
    """Reserve every draft in the ledger; returns the send ids.

    The step's claim keeps it from being handed out again while it is in flight, so the
    enrollment row is not touched here.
    """
    new = [d for d in drafts if d.row.send_id is None]
    ids: dict[int, int] = {}
    connection = session.connection()
    if new and connection.dialect.name == "postgresql":
        ids = bulk.insert_sends(connection, [_send_values(d, now) for d in new], now)
    elif new:
        rows = connection.execute(INSERT_SEND, [_send_values(d, now) for d in new])
        ids = {enrollment_id: send_id for send_id, enrollment_id in rows}
    for item in drafts:
        if item.row.send_id is not None:
            existing = session.get(Send, item.row.send_id)
            ids[item.enrollment_id] = ledger.reserve(
                session, existing, item.composed, item.enrollment_id, item.step, now
            )
    return [ids[d.enrollment_id] for d in drafts]


def _send_values(item: Draft, now: datetime) -> dict[str, Any]:
    email = item.composed.email
    return {
        "enrollment_id": item.enrollment_id,
        "step": item.step,
        "message_id": email.message_id,
        "status": SendStatus.SENDING,
        "template": item.composed.template,
        "subject": email.subject,
        "to_email": email.to_email,
        "sender_email": item.composed.sender_email,
        "attempts": 1,
        "created_at": now,
        "started_at": now,
    }


def prepared(app: App, item: Draft, send_id: int) -> Prepared:
    """The reserved draft as bytes for the mailer."""
    email = item.composed.email
    return Prepared(
        send_id=send_id,
        enrollment_id=item.enrollment_id,
        step=item.step,
        envelope_from=item.composed.sender_email,
        recipient=email.to_email,
        message_id=email.message_id,
        data=item.data,
        prospect_id=item.row.prospect_id,
        sequence_id=item.sequence.id,
        template=item.composed.template,
        sequence=item.sequence,
        tz=item.tz,
    )


def prepare_many(
    app: App, session: Session, claims: Seq[tuple[int, int]], now: datetime
) -> tuple[list[Prepared], list[tuple[int, int]]]:
    """Reserve every claim the fast path can take; returns them and the claims it left."""
    rows = load(session, [enrollment_id for enrollment_id, _ in claims])
    drafts: list[Draft] = []
    left: list[tuple[int, int]] = []
    for enrollment_id, step in claims:
        row = rows.get(enrollment_id)
        item = draft(app, session, row, step, now) if row is not None else None
        if item is None:
            left.append((enrollment_id, step))
        else:
            drafts.append(item)
    drafts, over = within_limits(session, drafts, now)
    left += [(d.enrollment_id, d.step) for d in over]
    send_ids = reserve(session, drafts, now)
    return [prepared(app, d, i) for d, i in zip(drafts, send_ids, strict=True)], left
