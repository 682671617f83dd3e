"""`outreach classify`: what a message is, why, and what it would match, changing nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from outreach.app import App
from outreach.inbound import matching, mime
from outreach.inbound.classify import Classification, classify
from outreach.inbound.types import Kind


def explain(app: App, raw: bytes, now: datetime) -> dict[str, Any]:
    """The classifier's answer with the enrollment it matches; the database is only read."""
    msg = mime.parse(raw)
    try:
        found = classify(msg, now)
    except Exception as exc:  # one unreadable file must not hide the others' answers
        found = Classification(Kind.UNKNOWN, [f"could not be classified: {exc!r}"])
    answer = found.to_json()
    with Session(app.engine) as session:
        match = matching.find(session, msg, raw, found, app.secret)
        answer["match"] = (
            {
                "method": match.method,
                "email": match.prospect.email,
                "sequence": match.enrollment.sequence_id if match.enrollment else None,
                "step": match.step,
            }
            if match
            else None
        )
        session.rollback()
    return answer
