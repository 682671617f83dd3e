"""Ingesting one inbound message: keep it, classify it, match it and act on it, once.

Every message is stored with its raw bytes, whatever happens: one that cannot be read is
kept as `error`, one that matches nothing as `unmatched`, and both are listed by
`outreach inbox --unmatched`. A message seen again (the same file twice, IMAP after a
restart, a webhook retry) finds its first copy by its key and changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, defer
from sqlmodel import col, select

from outreach.app import App
from outreach.db import transaction
from outreach.inbound import matching, mime
from outreach.inbound.classify import Classification, classify
from outreach.inbound.effects import Effects
from outreach.inbound.types import Kind
from outreach.models import InboundMessage, InboundStatus

MAX_KEPT_BYTES = 50 * 1024 * 1024  # a message larger than this is kept cut to this size
log = logging.getLogger("outreach.inbound")


@dataclass
class Ingested:
    """What ingesting one message did."""

    id: int | None
    source: str
    kind: str
    status: str
    duplicate: bool = False
    match: str | None = None
    email: str | None = None
    sequence: str | None = None
    step: int | None = None
    effects: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def dedupe_key(msg: Message | None, raw: bytes) -> str:
    """One key per message however it arrives: its identifying headers, else its bytes."""
    if msg is not None:
        message_id = mime.header(msg, "Message-ID")
        if message_id:
            parts = [message_id, *(mime.header(msg, h) for h in ("From", "Date", "Subject"))]
            return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def _read(raw: bytes, now: datetime) -> tuple[Message | None, Classification, str | None]:
    try:
        msg = mime.parse(raw)
    except Exception as exc:  # the parser is tolerant; this is a last resort
        return None, Classification(Kind.UNKNOWN, ["could not be parsed"]), repr(exc)
    try:
        return msg, classify(msg, now), None
    except Exception as exc:
        log.exception("classifying an inbound message failed")
        return msg, Classification(Kind.UNKNOWN, ["could not be classified"]), repr(exc)


def _classified(raw: bytes, now: datetime) -> tuple[Message | None, Classification, str | None]:
    msg, found, error = _read(raw, now)
    if msg is not None and not msg.keys() and error is None:
        error = "no headers: not an email message"
        found = Classification(Kind.UNKNOWN, [error])
    found.text = clean(found.text) if found.text else found.text
    return msg, found, error


def ingest(app: App, raw: bytes, now: datetime, source: str = "-") -> Ingested:
    """Keep, classify, match and act on one raw message; its effect happens once."""
    msg, found, error = _classified(raw, now)
    with transaction(app.engine) as session:
        row = _keep(session, msg, raw, found, now, source, error)
        if row is None:
            return _duplicate(session, dedupe_key(msg, raw), source)
        return _handle(app, session, row, msg, raw, found, error, now)


def receive(app: App, raw: bytes, now: datetime, source: str) -> tuple[int, bool]:
    """Keep a message to be handled later (by the inbound actor); (its id, seen before)."""
    try:
        msg: Message | None = mime.parse(raw)
    except Exception:
        msg = None
    waiting = Classification(Kind.UNKNOWN, ["received, not handled yet"])
    with transaction(app.engine) as session:
        row = _keep(session, msg, raw, waiting, now, source, None, InboundStatus.RECEIVED)
        if row is None:
            first = session.scalar(
                select(InboundMessage.id).where(InboundMessage.dedupe_key == dedupe_key(msg, raw))
            )
            assert first is not None
            return first, True
        assert row.id is not None
        return row.id, False


def process(app: App, inbound_id: int, now: datetime) -> Ingested | None:
    """Handle a received message; None when it was handled already (a redelivery)."""
    with transaction(app.engine) as session:
        row = session.get(InboundMessage, inbound_id, with_for_update=True)
        if row is None or row.status != InboundStatus.RECEIVED:
            return None
        msg, found, error = _classified(row.raw, now)
        row.kind = str(found.kind)
        row.classification = _cleaned(found.to_json())
        row.status = InboundStatus.ERROR if error else InboundStatus.UNMATCHED
        row.error = clean(error) if error else None
        return _handle(app, session, row, msg, row.raw, found, error, now)


def waiting(app: App, now: datetime, lease: timedelta, limit: int = 100) -> list[int]:
    """Received messages nobody handled for `lease` (a lost broker message), taken for now.

    Taking one restarts its lease (`received_at` moves to `now`), so a backlog is handed
    out again once per lease, not on every scheduler pass, and the oldest go first.
    """
    with transaction(app.engine) as session:
        rows = session.scalars(
            select(InboundMessage)
            .options(defer(InboundMessage.raw))  # type: ignore[arg-type]
            .where(
                InboundMessage.status == InboundStatus.RECEIVED,
                col(InboundMessage.received_at) < now - lease,
            )
            .order_by(col(InboundMessage.received_at), col(InboundMessage.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            row.received_at = now
        return [row.id for row in rows if row.id is not None]


def _handle(
    app: App,
    session: Session,
    row: InboundMessage,
    msg: Message | None,
    raw: bytes,
    found: Classification,
    error: str | None,
    now: datetime,
) -> Ingested:
    result = Ingested(row.id, row.source, str(found.kind), str(row.status), error=error)
    if msg is None or error is not None:
        return result
    try:
        # the message is kept whatever happens next: a failure here undoes only its effects
        with session.begin_nested():
            _act(app, session, msg, raw, found, now, row, result)
    except Exception as exc:
        log.exception("acting on inbound message %s failed", row.id)
        row.status = InboundStatus.ERROR
        row.error = result.error = clean(f"could not be processed: {exc!r}")[:2000]
        result.status = str(row.status)
    return result


def _act(
    app: App,
    session: Session,
    msg: Message,
    raw: bytes,
    found: Classification,
    now: datetime,
    row: InboundMessage,
    result: Ingested,
) -> None:
    match = matching.find(session, msg, raw, found, app.secret)
    if match is None:
        return
    effects = Effects(session, app.versions, now).apply(found, match, row.id)
    row.status = InboundStatus.PROCESSED
    row.match = match.method
    row.prospect_id = match.prospect.id
    row.enrollment_id = match.enrollment.id if match.enrollment else None
    row.step = match.step
    row.effects = effects
    result.status = str(row.status)
    result.match = match.method
    result.email = match.prospect.email
    result.sequence = match.enrollment.sequence_id if match.enrollment else None
    result.step = match.step
    result.effects = effects


def clean(text: str) -> str:
    """Text a database takes: PostgreSQL refuses NUL characters."""
    return text.replace("\x00", "")


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    if isinstance(value, dict):
        return {k: _cleaned(v) for k, v in value.items()}
    return value


def _keep(
    session: Session,
    msg: Message | None,
    raw: bytes,
    found: Classification,
    now: datetime,
    source: str,
    error: str | None,
    status: InboundStatus | None = None,
) -> InboundMessage | None:
    """Store the message; None when it was stored before (a second copy)."""
    row = InboundMessage(
        dedupe_key=dedupe_key(msg, raw),
        source=clean(source)[:500],
        received_at=now,
        status=status or (InboundStatus.ERROR if error else InboundStatus.UNMATCHED),
        kind=str(found.kind),
        from_email=(clean(mime.sender(msg) or "")[:320] or None) if msg is not None else None,
        subject=(clean(mime.header(msg, "Subject"))[:500] if msg is not None else None),
        message_id=(clean(mime.header(msg, "Message-ID"))[:998] if msg is not None else None),
        size=len(raw),
        classification=_cleaned(found.to_json()),
        effects=[],
        error=clean(error) if error else None,
        raw=raw[:MAX_KEPT_BYTES],
    )
    try:
        with session.begin_nested():
            session.add(row)
    except sa.exc.IntegrityError:
        return None
    return row


def _duplicate(session: Session, key: str, source: str) -> Ingested:
    first = session.scalar(select(InboundMessage).where(InboundMessage.dedupe_key == key))
    assert first is not None
    return Ingested(
        first.id,
        source,
        first.kind,
        str(first.status),
        duplicate=True,
        match=first.match,
        effects=["already ingested: nothing changed"],
    )


def listing(
    session: Session, statuses: list[InboundStatus], limit: int = 200
) -> list[dict[str, Any]]:
    """Kept messages in these states, newest first (their raw bytes are not loaded)."""
    rows = session.scalars(
        select(InboundMessage)
        .options(defer(InboundMessage.raw))  # type: ignore[arg-type]
        .where(col(InboundMessage.status).in_(statuses))
        .order_by(col(InboundMessage.id).desc())
        .limit(limit)
    )
    return [
        {
            "id": r.id,
            "received_at": r.received_at.isoformat(),
            "status": str(r.status),
            "kind": r.kind,
            "from": r.from_email,
            "subject": r.subject,
            "source": r.source,
            "size": r.size,
            "error": r.error,
            "why": r.classification.get("why", []),
        }
        for r in rows
    ]
