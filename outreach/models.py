"""Database tables: prospects, sequence versions, enrollments, the send ledger, events."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Column, Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back aware UTC datetimes; naive values are refused."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(sa.JSON(), nullable=False))


class EnrollmentState(StrEnum):
    """Where an enrollment stands."""

    ACTIVE = "active"
    PAUSED = "paused"
    FINISHED = "finished"
    REPLIED = "replied"
    MEETING_BOOKED = "meeting_booked"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    STOPPED = "stopped"
    FAILED = "failed"


OPEN_STATES = (EnrollmentState.ACTIVE, EnrollmentState.PAUSED)


class SendStatus(StrEnum):
    """Where one (enrollment, step) send stands in the ledger."""

    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class EventType(StrEnum):
    """What happened to a prospect, as listed in a timeline."""

    ENROLLED = "enrolled"
    SENT = "sent"
    OPENED = "opened"
    CLICKED = "clicked"
    REPLIED = "replied"
    AUTO_REPLY = "auto_reply"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    PAUSED = "paused"
    RESUMED = "resumed"
    CALL_TASK = "call_task"
    CALL_DONE = "call_done"
    MEETING_BOOKED = "meeting_booked"
    FAILED = "failed"


class Prospect(SQLModel, table=True):
    """A person a rep may mail; the email is normalized and unique."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(sa.String(320), nullable=False, unique=True))
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    phone: str | None = None
    timezone: str | None = None
    owner: str | None = None
    fields: dict[str, Any] = _json()
    score: int = 0
    created_at: datetime = _when()
    updated_at: datetime = _when()


class Suppression(SQLModel, table=True):
    """An address that is never mailed again."""

    email: str = Field(sa_column=Column(sa.String(320), primary_key=True))
    reason: str
    created_at: datetime = _when()


class SequenceVersion(SQLModel, table=True):
    """One version of a sequence, parsed, with its templates: enrollments keep theirs."""

    __table_args__ = (sa.UniqueConstraint("sequence_id", "content_hash"),)
    id: int | None = Field(default=None, primary_key=True)
    sequence_id: str = Field(index=True)
    content_hash: str
    snapshot: dict[str, Any] = _json()
    created_at: datetime = _when()


class Enrollment(SQLModel, table=True):
    """A prospect in a sequence: its state, its next step and when that step is due."""

    __table_args__ = (
        sa.Index(
            "ix_enrollment_due",
            "next_run_at",
            "id",
            postgresql_include=["step"],
            postgresql_where=sa.text("state = 'active'"),
            sqlite_where=sa.text("state = 'active'"),
        ),
        sa.Index(
            "uq_enrollment_open",
            "prospect_id",
            "sequence_id",
            unique=True,
            postgresql_where=sa.text("state IN ('active', 'paused')"),
            sqlite_where=sa.text("state IN ('active', 'paused')"),
        ),
        sa.Index(
            "ix_enrollment_resume",
            "resume_at",
            postgresql_where=sa.text("resume_at IS NOT NULL"),
            sqlite_where=sa.text("resume_at IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    prospect_id: int = Field(foreign_key="prospect.id", index=True)
    sequence_id: str = Field(index=True)
    version_id: int = Field(foreign_key="sequenceversion.id")
    state: EnrollmentState = Field(sa_column=Column(sa.String(20), nullable=False))
    step: int = 1
    next_run_at: datetime | None = _when(nullable=True)
    last_step_at: datetime | None = _when(nullable=True)
    sender: str
    owner: str | None = None
    reason: str | None = None
    # set while an out-of-office pause waits for the person's return: the scheduler resumes it
    resume_at: datetime | None = _when(nullable=True)
    exclusive: bool = True
    enrolled_at: datetime = _when()
    updated_at: datetime = _when()


class DispatchClaim(SQLModel, table=True):
    """A due step handed to the workers: no other pass hands out the same step until `until`.

    Claims live here, not on the enrollment rows, so a pass writes a few dense pages
    however many enrollments there are; a claim for an earlier step never blocks the next.
    """

    __tablename__ = "dispatch_claim"
    # no foreign key: checking one share-locks the enrollment row, writing to its page
    enrollment_id: int = Field(sa_column=Column(sa.Integer, primary_key=True, autoincrement=False))
    step: int
    until: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    attempts: int = 1
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # worker starts on this step that never finished: a crash, a kill, a poison message
    starts: int = Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))


class Send(SQLModel, table=True):
    """The send ledger: one row per (enrollment, step), reserved before SMTP is spoken."""

    __table_args__ = (
        sa.UniqueConstraint("enrollment_id", "step"),
        sa.Index("ix_send_sender_started", "sender_email", "started_at"),
        sa.Index("ix_send_to_email", "to_email"),
    )
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id")
    step: int
    message_id: str = Field(sa_column=Column(sa.String(255), nullable=False, unique=True))
    status: SendStatus = Field(sa_column=Column(sa.String(20), nullable=False))
    template: str
    subject: str
    to_email: str
    sender_email: str
    attempts: int = 0
    code: int | None = None
    error: str | None = None
    created_at: datetime = _when()
    started_at: datetime | None = _when(nullable=True)
    sent_at: datetime | None = _when(nullable=True)
    # set, in its own commit, just before the message is handed to the mail server: a
    # 'sending' row cut off before that was never offered to anyone and may be sent again
    handed: bool = Field(
        default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false())
    )


class Event(SQLModel, table=True):
    """Something that happened to a prospect, for timelines and stats."""

    __table_args__ = (sa.Index("ix_event_prospect_at", "prospect_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    prospect_id: int = Field(foreign_key="prospect.id")
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id", index=True)
    sequence_id: str | None = None
    step: int | None = None
    type: EventType = Field(sa_column=Column(sa.String(20), nullable=False, index=True))
    at: datetime = _when()
    data: dict[str, Any] = _json()


class CallTask(SQLModel, table=True):
    """A call for the prospect's owner: from a call step or from engagement."""

    __table_args__ = (sa.UniqueConstraint("enrollment_id", "step"),)
    id: int | None = Field(default=None, primary_key=True)
    prospect_id: int = Field(foreign_key="prospect.id", index=True)
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id")
    sequence_id: str | None = None
    step: int | None = None
    owner: str | None = None
    reason: str
    note: str | None = None
    due_at: datetime = _when()
    status: str = "open"
    outcome: str | None = None
    created_at: datetime = _when()
    done_at: datetime | None = _when(nullable=True)


class InboundStatus(StrEnum):
    """What became of an inbound message."""

    RECEIVED = "received"  # kept by the webhook, waiting for the inbound actor
    PROCESSED = "processed"  # matched and acted on
    UNMATCHED = "unmatched"  # kept: no enrollment or prospect found
    ERROR = "error"  # kept: it could not be read


class InboundMessage(SQLModel, table=True):
    """Every message outreach read, kept with its raw bytes: none is ever dropped."""

    __tablename__ = "inbound_message"
    id: int | None = Field(default=None, primary_key=True)
    # one row per message however often it arrives (IMAP, webhook, a file ingested twice)
    dedupe_key: str = Field(sa_column=Column(sa.String(64), nullable=False, unique=True))
    source: str
    received_at: datetime = _when()
    status: InboundStatus = Field(sa_column=Column(sa.String(20), nullable=False, index=True))
    kind: str = Field(sa_column=Column(sa.String(20), nullable=False))
    match: str | None = None  # how it was matched: in_reply_to, references, bounce_original...
    prospect_id: int | None = Field(default=None, foreign_key="prospect.id", index=True)
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id")
    step: int | None = None
    from_email: str | None = None
    subject: str | None = None
    message_id: str | None = Field(default=None, sa_column=Column(sa.String(998)))
    size: int = 0
    classification: dict[str, Any] = _json()
    effects: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON(), nullable=False))
    error: str | None = None
    raw: bytes = Field(sa_column=Column(sa.LargeBinary(), nullable=False))


class Meta(SQLModel, table=True):
    """Small facts the installation keeps, such as its generated secret key."""

    key: str = Field(primary_key=True)
    value: str
