"""What people read: a prospect's timeline, the funnel per step and variant."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import prospect as prospects
from outreach.models import CallTask, Enrollment, Event, EventType, Prospect, Send, SendStatus
from outreach.tracking import human_events
from outreach.versions import VersionCache

STAT_EVENTS = {
    EventType.OPENED: "opened",
    EventType.CLICKED: "clicked",
    EventType.REPLIED: "replied",
    EventType.BOUNCED: "bounced",
    EventType.UNSUBSCRIBED: "unsubscribed",
    EventType.MEETING_BOOKED: "meetings",
}
MACHINE_COUNTED = (EventType.OPENED, EventType.CLICKED)
COUNTERS = ("sent", "opened", "clicked", "replied", "bounced", "unsubscribed", "meetings")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def is_engaged(session: Session, cache: VersionCache, prospect: Prospect) -> bool:
    """Engaged: an open call task from engagement, or a score at a sequence's threshold."""
    flagged = session.scalars(
        select(CallTask.id).where(
            CallTask.prospect_id == prospect.id,
            CallTask.status == "open",
            col(CallTask.reason).in_(("engaged", "interested")),
        )
    ).first()
    if flagged:
        return True
    versions = session.scalars(
        select(Enrollment.version_id).where(Enrollment.prospect_id == prospect.id).distinct()
    )
    thresholds = [cache.load(session, v).engagement.threshold for v in versions]
    return bool(thresholds) and prospect.score >= min(thresholds)


def prospect_view(session: Session, cache: VersionCache, email: str) -> dict[str, Any]:
    """The prospect, their enrollments and their timeline, in the shape scripts rely on."""
    person = prospects.find(session, email)
    enrollments = session.scalars(
        select(Enrollment).where(Enrollment.prospect_id == person.id).order_by(col(Enrollment.id))
    )
    timeline = session.scalars(
        select(Event).where(Event.prospect_id == person.id).order_by(col(Event.at), col(Event.id))
    )
    return {
        "email": person.email,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "company": person.company,
        "title": person.title,
        "phone": person.phone,
        "timezone": person.timezone,
        "owner": person.owner,
        "fields": person.fields,
        "engaged": is_engaged(session, cache, person),
        "score": person.score,
        "enrollments": [_enrollment(e) for e in enrollments],
        "events": [_event(e) for e in timeline],
    }


def _enrollment(enrollment: Enrollment) -> dict[str, Any]:
    return {
        "sequence": enrollment.sequence_id,
        "state": str(enrollment.state),
        "step": enrollment.step,
        "next_run_at": _iso(enrollment.next_run_at),
        "sender": enrollment.sender,
        "owner": enrollment.owner,
        "reason": enrollment.reason,
    }


def _event(event: Event) -> dict[str, Any]:
    return {
        "type": str(event.type),
        "at": _iso(event.at),
        "sequence": event.sequence_id,
        "step": event.step,
        **{k: v for k, v in event.data.items() if k not in ("type", "at", "sequence", "step")},
    }


def stats(session: Session, sequence_id: str | None = None) -> list[dict[str, Any]]:
    """Per sequence, step and variant: sends, engagement, replies, bounces and meetings."""
    rows: dict[tuple[str, int, str], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(COUNTERS, 0)
    )
    for seq, step, template, count in session.execute(_sent_query(sequence_id)):
        rows[(seq, step, template)]["sent"] += count
    for seq, step, template, type_, count in session.execute(_event_query(sequence_id)):
        rows[(seq, step, template)][STAT_EVENTS[EventType(type_)]] += count
    return [
        {"sequence": seq, "step": step, "variant": template, **counts}
        for (seq, step, template), counts in sorted(rows.items())
    ]


def _sent_query(sequence_id: str | None) -> Any:
    query = (
        select(Enrollment.sequence_id, Send.step, Send.template, sa.func.count())
        .join(Enrollment, col(Enrollment.id) == col(Send.enrollment_id))
        .where(Send.status == SendStatus.SENT)
        .group_by(col(Enrollment.sequence_id), col(Send.step), col(Send.template))
    )
    return query.where(Enrollment.sequence_id == sequence_id) if sequence_id else query


def _event_query(sequence_id: str | None) -> Any:
    query = (
        select(  # type: ignore[call-overload]
            Event.sequence_id,
            Event.step,
            Send.template,
            Event.type,
            sa.func.count(sa.distinct(col(Event.enrollment_id))),
        )
        .join(
            Send,
            sa.and_(
                col(Send.enrollment_id) == col(Event.enrollment_id),
                col(Send.step) == col(Event.step),
            ),
        )
        .where(Event.type.in_(list(STAT_EVENTS)))  # type: ignore[attr-defined]
        # opens and clicks by machines (Apple's proxy, link scanners) are not engagement
        .where(sa.or_(col(Event.type).notin_(MACHINE_COUNTED), human_events()))
        .group_by(Event.sequence_id, Event.step, Send.template, Event.type)
    )
    return query.where(Event.sequence_id == sequence_id) if sequence_id else query
