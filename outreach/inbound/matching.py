"""Which enrollment an inbound message is about, and how that was found.

In order of trust: the Message-IDs we sent (In-Reply-To, References, or the original
message inside a bounce or complaint report), a signed unsubscribe token, our own
X-Outreach-Enrollment header quoted in a report, the failed recipient of a bounce, and
last the sender's address for a person who wrote a new mail instead of replying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import tokens
from outreach.inbound import mime
from outreach.inbound.classify import Classification
from outreach.inbound.types import Kind
from outreach.models import Enrollment, Prospect, Send

_OUR_HEADER_RE = re.compile(rb"X-Outreach-Enrollment:\s*(\d+)\.(\d+)", re.I)
_REPORTS = (Kind.BOUNCE, Kind.COMPLAINT, Kind.DELIVERY_REPORT)


@dataclass
class Match:
    """The enrollment (and step) a message answers, and the method that found it."""

    method: str
    prospect: Prospect
    enrollment: Enrollment | None = None
    step: int | None = None


def find(
    session: Session, msg: Message, raw: bytes, found: Classification, secret: str
) -> Match | None:
    """The best match for a classified message, or None."""
    if found.kind in _REPORTS:
        return _report(session, raw, found)
    if found.unsubscribe_token:
        match = _token(session, found.unsubscribe_token, secret)
        if match:
            return match
    return _thread(session, msg) or _sender(session, mime.sender(msg), "sender")


def _report(session: Session, raw: bytes, found: Classification) -> Match | None:
    original = None
    addresses: list[str] = []
    if found.bounce is not None:
        original = found.bounce.original_message_id
        addresses = [r.address for r in found.bounce.recipients if r.address]
        label = "bounce"
    elif found.complaint is not None:
        original = found.complaint.original_message_id
        addresses = [found.complaint.original_recipient or ""]
        label = "complaint"
    else:
        label = "report"
    if original:
        match = _by_message_id(session, original, f"{label}_original")
        if match:
            return match
    header = _OUR_HEADER_RE.search(raw[:2_000_000])
    if header:
        match = _by_send(session, int(header.group(1)), int(header.group(2)), f"{label}_header")
        if match:
            return match
    for address in addresses:
        match = _sender(session, address, f"{label}_recipient")
        if match:
            return match
    return None


def _thread(session: Session, msg: Message) -> Match | None:
    for name, method in (("In-Reply-To", "in_reply_to"), ("References", "references")):
        # the newest reference is the last one written
        for message_id in reversed(mime.message_ids(mime.header(msg, name))):
            match = _by_message_id(session, message_id, method)
            if match:
                return match
    return None


def _by_message_id(session: Session, message_id: str, method: str) -> Match | None:
    send = session.scalar(select(Send).where(Send.message_id == f"<{message_id}>"))
    if send is None:
        return None
    return _from_send(session, send, method)


def _by_send(session: Session, enrollment_id: int, step: int, method: str) -> Match | None:
    send = session.scalar(
        select(Send).where(Send.enrollment_id == enrollment_id, Send.step == step)
    )
    return _from_send(session, send, method) if send else None


def _from_send(session: Session, send: Send, method: str) -> Match | None:
    enrollment = session.get(Enrollment, send.enrollment_id)
    if enrollment is None:
        return None
    prospect = session.get(Prospect, enrollment.prospect_id)
    if prospect is None:
        return None
    return Match(method, prospect, enrollment, send.step)


def _token(session: Session, token: str, secret: str) -> Match | None:
    payload = tokens.verify(token, secret)
    if not payload or not payload.startswith("u:"):
        return None
    try:
        _u, enrollment_id, step = payload.split(":")
        return _by_send(session, int(enrollment_id), int(step), "unsubscribe_token")
    except ValueError:
        return None


def _sender(session: Session, address: str | None, method: str) -> Match | None:
    """The prospect with this address, at the newest send that went to it."""
    if not address:
        return None
    address = address.strip().lower()
    prospect = session.scalar(select(Prospect).where(Prospect.email == address))
    if prospect is None:
        return None
    send = session.scalar(
        select(Send)
        .where(Send.to_email == address)
        .order_by(col(Send.created_at).desc(), col(Send.id).desc())
        .limit(1)
    )
    if send is not None:
        match = _from_send(session, send, method)
        if match:
            return match
    enrollment = session.scalar(
        select(Enrollment)
        .where(Enrollment.prospect_id == prospect.id)
        .order_by(col(Enrollment.id).desc())
        .limit(1)
    )
    return Match(method, prospect, enrollment, None)
