"""Engagement: points for opens, clicks and replies, and flagging prospects for a call.

A prospect's score is one number across sequences; each enrollment's own version says
how many points an open, a click or a reply earns and where its threshold lies. A
prospect is put in the owner's call queue once: while an engagement task is open, no
second one is made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import events
from outreach.models import CallTask, Enrollment, EventType, Prospect
from outreach.sequence import Engagement
from outreach.versions import VersionCache

Signal = Literal["open", "click", "reply"]
# reasons of tasks that come from what a prospect did, not from a call step
FLAG_REASONS = ("engaged", "interested", "referral")


def policy(session: Session, cache: VersionCache, enrollment: Enrollment | None) -> Engagement:
    """The engagement points of an enrollment's version, or the defaults."""
    if enrollment is None:
        return Engagement()
    return cache.load(session, enrollment.version_id).engagement


def score(
    session: Session,
    cache: VersionCache,
    prospect: Prospect,
    enrollment: Enrollment | None,
    signal: Signal,
    now: datetime,
) -> CallTask | None:
    """Add the points a signal earns; a prospect reaching the threshold is flagged for a call."""
    rules = policy(session, cache, enrollment)
    points = getattr(rules, signal)
    if points:
        new = session.execute(
            sa.update(Prospect)
            .where(col(Prospect.id) == prospect.id)
            .values(score=col(Prospect.score) + points)
            .returning(col(Prospect.score))
            .execution_options(synchronize_session=False)
        ).scalar_one()
        prospect.score = new
        session.expire(prospect, ["score"])
    if prospect.score >= rules.threshold:
        note = f"score {prospect.score} reached the threshold of {rules.threshold}"
        return flag(session, prospect, enrollment, "engaged", now, note)
    return None


def open_flag(session: Session, prospect_id: int) -> CallTask | None:
    """The prospect's open task from engagement, interest or a referral, if any."""
    return session.scalars(
        select(CallTask).where(
            CallTask.prospect_id == prospect_id,
            CallTask.status == "open",
            col(CallTask.reason).in_(FLAG_REASONS),
        )
    ).first()


def flag(
    session: Session,
    prospect: Prospect,
    enrollment: Enrollment | None,
    reason: str,
    now: datetime,
    note: str | None = None,
    step: int | None = None,
) -> CallTask | None:
    """Put the prospect in the owner's call queue once; None when a task is already open."""
    assert prospect.id is not None
    # the prospect's row lock makes "once" hold between concurrent ingests and clicks
    session.execute(select(Prospect.id).where(Prospect.id == prospect.id).with_for_update())
    if open_flag(session, prospect.id) is not None:
        return None
    task = CallTask(
        prospect_id=prospect.id,
        enrollment_id=enrollment.id if enrollment else None,
        sequence_id=enrollment.sequence_id if enrollment else None,
        step=None,
        owner=(enrollment.owner if enrollment else None) or prospect.owner,
        reason=reason,
        note=note,
        due_at=now,
        created_at=now,
    )
    session.add(task)
    events.record(
        session,
        EventType.CALL_TASK,
        now,
        prospect_id=prospect.id,
        enrollment=enrollment,
        step=step,
        reason=reason,
        note=note,
    )
    return task
