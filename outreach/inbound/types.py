"""What the classifier says about one inbound message."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What an inbound message is, whether or not it matches an enrollment."""

    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    DELIVERY_REPORT = "delivery_report"
    UNKNOWN = "unknown"


class Intent(StrEnum):
    """What a person's reply wants, read from its new text only."""

    INTERESTED = "interested"
    NOT_INTERESTED = "not_interested"
    REFERRAL = "referral"
    UNSUBSCRIBE = "unsubscribe"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class FailedRecipient:
    """One address a bounce report says could not be delivered to."""

    address: str | None
    status: str | None  # enhanced status code such as "5.1.1", when the report gives one
    reason: str  # a short slug: userunknown, hostunknown, mailboxfull, blocked, expired...
    hard: bool  # the address itself is bad: suppress it
    diagnostic: str | None = None  # the remote server's words

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "status": self.status,
            "reason": self.reason,
            "hard": self.hard,
            "diagnostic": self.diagnostic,
        }


@dataclass(frozen=True)
class BounceReport:
    """A non-delivery report: who failed and why, and the returned message's id if present."""

    recipients: list[FailedRecipient]
    hard: bool
    original_message_id: str | None = None
    why: list[str] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return next((r.status for r in self.recipients if r.status), None)

    @property
    def reason(self) -> str:
        return self.recipients[0].reason if self.recipients else "undefined"

    def to_json(self) -> dict[str, Any]:
        return {
            "hard": self.hard,
            "status": self.status,
            "reason": self.reason,
            "recipients": [r.to_json() for r in self.recipients],
        }


@dataclass(frozen=True)
class Complaint:
    """A spam complaint (ARF, RFC 5965) about a message we sent."""

    feedback_type: str
    original_recipient: str | None
    original_message_id: str | None
    why: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AutoReply:
    """An automatic answer (out of office, vacation...) and the return date the text gives."""

    why: list[str]
    return_date: date | None = None


@dataclass(frozen=True)
class Reply:
    """A person's reply: the new text without quoted history and signature, and its intent."""

    text: str
    intent: Intent
    why: list[str] = field(default_factory=list)
