"""Say what an inbound message is and why, without touching the database.

The order matters: a complaint (ARF) and a bounce report often carry the headers of an
automatic reply, and an auto-reply quotes our mail, so each test runs only when the ones
before it said no.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

from outreach.inbound import autoreply, bounce, mime, reply
from outreach.inbound.types import BounceReport, Complaint, Intent, Kind

_UNSUBSCRIBE_SUBJECT_RE = re.compile(r"^\s*unsubscribe\s+(\S+)\s*$", re.I)


@dataclass
class Classification:
    """The classifier's answer for one message; `why` explains it in plain words."""

    kind: Kind
    why: list[str] = field(default_factory=list)
    bounce: BounceReport | None = None
    complaint: Complaint | None = None
    intent: Intent | None = None
    return_date: date | None = None
    text: str | None = None
    # a token from the mailto unsubscribe link (subject "unsubscribe TOKEN")
    unsubscribe_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "bounce": self.bounce.to_json() if self.bounce else None,
            "feedback_type": self.complaint.feedback_type if self.complaint else None,
            "intent": str(self.intent) if self.intent else None,
            "return_date": self.return_date.isoformat() if self.return_date else None,
            "text": self.text,
            "why": self.why,
        }


def received_at(msg: Message, fallback: datetime) -> datetime:
    """When the message says it was written (its Date header), else `fallback`."""
    value = mime.header(msg, "Date")
    if value:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return fallback
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when
    return fallback


def classify(msg: Message, now: datetime) -> Classification:
    """What the message is: complaint, bounce, delivery report, auto-reply, unsubscribe, reply."""
    complaint = bounce.read_complaint(msg)
    if complaint is not None:
        return Classification(Kind.COMPLAINT, list(complaint.why), complaint=complaint)
    report = bounce.read_bounce(msg)
    if report is not None:
        return Classification(Kind.BOUNCE, list(report.why), bounce=report)
    if bounce.is_delivery_report(msg):
        return Classification(
            Kind.DELIVERY_REPORT, ["a delivery status report that says delivered"]
        )
    subject = mime.header(msg, "Subject")
    token = _UNSUBSCRIBE_SUBJECT_RE.match(subject)
    if token:
        return Classification(
            Kind.UNSUBSCRIBE,
            ["subject is our mailto unsubscribe link's"],
            unsubscribe_token=token.group(1),
        )
    text = mime.text_body(msg)
    # a sender's clock ahead of ours must not push a return date further out
    auto = autoreply.detect(msg, text, min(received_at(msg, now), now).date())
    if auto is not None:
        return Classification(Kind.AUTO_REPLY, list(auto.why), return_date=auto.return_date)
    answer = reply.read_reply(text, subject)
    kind = Kind.UNSUBSCRIBE if answer.intent == Intent.UNSUBSCRIBE else Kind.REPLY
    if not answer.text and not subject:
        kind = Kind.UNKNOWN
    return Classification(kind, list(answer.why), intent=answer.intent, text=answer.text)


def classify_bytes(raw: bytes, now: datetime) -> Classification:
    """Parse and classify raw message bytes."""
    return classify(mime.parse(raw), now)
