"""Per-sender limits, counted across all sequences over rolling hours and days."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from outreach import ledger
from outreach.schedule import Schedule

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def lock_sender(session: Session, sender_email: str) -> None:
    """Serialize limit checks for one address across workers (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": sender_email}
        )


def free_at(
    session: Session, sender_email: str, schedule: Schedule, now: datetime
) -> datetime | None:
    """None when the sender may send now, else the moment a slot frees up.

    Limits count the last 60 minutes and the last 24 hours, so a limit means the same in
    every timezone a sender's prospects live in.
    """
    later: datetime | None = None
    for limit, span in ((schedule.hourly_limit, HOUR), (schedule.daily_limit, DAY)):
        if not limit:
            continue
        since = now - span
        used = ledger.recent_count(session, sender_email, since)
        if used >= limit:
            freed = ledger.nth_since(session, sender_email, since, used - limit) + span
            later = max(later or freed, freed)
    return later


def room(session: Session, sender_email: str, schedule: Schedule, now: datetime) -> int:
    """How many more messages the sender may start now under the schedule's limits."""
    spare = 10**9
    for limit, span in ((schedule.hourly_limit, HOUR), (schedule.daily_limit, DAY)):
        if limit:
            spare = min(spare, limit - ledger.recent_count(session, sender_email, now - span))
    return max(0, spare)
