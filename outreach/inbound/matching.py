"""Which enrollment an inbound message is about, and how that was found.

In order of trust: the Message-IDs we sent (In-Reply-To, References, or the original
message inside a bounce or complaint report), a signed unsubscribe token, the failed
recipient of a bounce, and last the sender's address for a person who wrote a new mail
instead of replying. Our Message-IDs carry a signature, so they cannot be guessed; the
enrollment header we add is not trusted here, because anyone could write it.

A match also says whose address the message speaks for: the failed recipient of a
bounce, or the sender of a reply. When that is not the address the matched send went
to (a forward, a colleague answering), the effects act on the thread but do not
suppress or pause the person the message did not come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message

from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import tokens
from outreach.inbound import mime
from outreach.inbound.classify import Classification
from outreach.inbound.types import FailedRecipient, Kind
from outreach.models import Enrollment, Prospect, Send

_REPORTS = (Kind.BOUNCE, Kind.COMPLAINT, Kind.DELIVERY_REPORT)
MAX_REFERENCES = 20  # the newest ids of a References header that are looked up


@dataclass
class Match:
    """The enrollment (and step) a message answers, and the method that found it."""

    method: str
    prospect: Prospect
    enrollment: Enrollment | None = None
    step: int | None = None
    to_email: str | None = None  # where the matched send went
    speaker: str | None = None  # whose address the message speaks for
    recipient: FailedRecipient | None = None  # the bounce's line about that address

    @property
    def is_the_prospect(self) -> bool:
        """True when the message comes from (or is about) the prospect's own address."""
        return self.speaker is None or self.speaker == self.prospect.email


def find(
    session: Session, msg: Message, raw: bytes, found: Classification, secret: str
) -> Match | None:
    """The best match for a classified message, or None."""
    if found.kind in _REPORTS:
        return _report(session, found)
    speaker = mime.sender(msg)
    match = None
    if found.unsubscribe_token:
        match = _token(session, found.unsubscribe_token, secret)
    match = match or _thread(session, msg) or _sender(session, speaker, "sender")
    if match is not None:
        match.speaker = speaker
    return match


def _report(session: Session, found: Classification) -> Match | None:
    original = None
    recipients: list[FailedRecipient] = []
    if found.bounce is not None:
        original = found.bounce.original_message_id
        recipients = [r for r in found.bounce.recipients if r.address]
        label = "bounce"
    elif found.complaint is not None:
        original = found.complaint.original_message_id
        who = found.complaint.original_recipient
        recipients = [FailedRecipient(who, None, "complaint", False)] if who else []
        label = "complaint"
    else:
        label = "report"
    match = _by_message_ids(session, [original], f"{label}_original") if original else None
    if match is None:
        for recipient in recipients:
            match = _sender(session, recipient.address, f"{label}_recipient")
            if match:
                break
    if match is None:
        return None
    _speaks_for(match, recipients, found.kind == Kind.BOUNCE)
    return match


def _speaks_for(match: Match, recipients: list[FailedRecipient], is_bounce: bool) -> None:
    """The report's line about the address the matched send went to, if it has one."""
    sent_to = (match.to_email or match.prospect.email).lower()
    for recipient in recipients:
        if (recipient.address or "").lower() == sent_to:
            match.speaker, match.recipient = sent_to, recipient
            return
    if not recipients:
        match.speaker = sent_to  # a report naming no address speaks for the send it returns
        return
    # the report is about other addresses (a forward): it says nothing of this prospect's
    match.speaker = (recipients[0].address or "").lower() if is_bounce else sent_to


def _thread(session: Session, msg: Message) -> Match | None:
    for name, method in (("In-Reply-To", "in_reply_to"), ("References", "references")):
        ids = mime.message_ids(mime.header(msg, name))[-MAX_REFERENCES:]
        match = _by_message_ids(session, ids, method)
        if match:
            return match
    return None


def _by_message_ids(
    session: Session, message_ids: Sequence[str | None], method: str
) -> Match | None:
    """The send of the newest (last written) of these ids that is in the ledger."""
    wanted = [f"<{m}>" for m in message_ids if m and len(m) < 250]
    if not wanted:
        return None
    sends = {
        s.message_id: s
        for s in session.scalars(select(Send).where(col(Send.message_id).in_(wanted)))
    }
    for message_id in reversed(wanted):
        if message_id in sends:
            return _from_send(session, sends[message_id], method)
    return None


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
    return Match(method, prospect, enrollment, send.step, to_email=send.to_email)


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
    if not address or len(address) > 320:
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
    return Match(method, prospect, enrollment, None, to_email=address)
