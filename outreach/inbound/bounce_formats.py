"""Readers for the forms a bounce report or complaint comes in, each giving `Rcpt` records.

- RFC 3464 fields (`part_fields`, `dsn_records`): a message/delivery-status part, the
  same syntax in an ARF feedback-report part, or the fields quoted in a report's text.
- Amazon SES notifications (`ses_json`, `ses_bounce`, `ses_complaint`): JSON, maybe
  wrapped in an SNS envelope, in a text/plain message.
- Free-text reports with no delivery-status part, as qmail, Postfix, Exim, Sendmail,
  Exchange, OpenSMTPD and others write them (`looks_like_bounce`, `text_recipients`,
  `recipient_hits`): whether the message is a non-delivery report at all, and the lines
  that name a failed recipient with the text about each.

The patterns are in `bounce_rules`; `bounce` finds the parts of a message, calls these
readers and decides each recipient's reason.
"""

from __future__ import annotations

import email.header
import json
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Any

from outreach.inbound import mime
from outreach.inbound.bounce_rules import (
    ADDR_RE,
    ANY_RCPT_RES,
    AUTO_REPLY_SUBJECT_RE,
    BOUNCE_BODY_RE,
    BOUNCE_SUBJECT_RE,
    DAEMON_RE,
    DSN_FIELD_RE,
    NOT_RCPT_RE,
    QUOTE_LINE_RE,
    QUOTED_TO_RE,
    RCPT_FIELDS,
    RECORD_FIELDS,
    REPLY_PREFIX_RE,
    SCAN_CHARS,
    STATUS_RE,
    STRONG_RCPT_RES,
    WEAK_RCPT_RES,
)
from outreach.inbound.types import Complaint


@dataclass
class Rcpt:
    """A recipient as read from a report, before its reason is decided."""

    address: str | None
    status: str | None = None
    action: str | None = None
    diagnostic: str = ""
    context: str = ""  # the report text about this address


# --- RFC 3464 fields ----------------------------------------------------------------------


def part_fields(part: Message) -> list[tuple[str, str]]:
    """(lower-cased name, value) pairs of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _text_fields(mime.payload_text(part)[:SCAN_CHARS])
    found: list[tuple[str, str]] = []
    for block in payload:
        if isinstance(block, Message):
            found.extend((k.lower(), squash(str(v))) for k, v in block.items())
            rest = block.get_payload()
            if isinstance(rest, str) and ":" in rest:
                found.extend(_text_fields(rest[:SCAN_CHARS]))
    return found


def _text_fields(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and found:
            name, value = found[-1]
            found[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if sep and name and " " not in name.strip():
            found.append((name.strip().lower(), value.strip()))
    return found


def dsn_records(fields: Iterable[tuple[str, str]]) -> list[Rcpt]:
    """Per-recipient records from a stream of DSN fields; a repeated field starts a new one."""
    records: list[Rcpt] = []
    current = Rcpt(None)
    seen: set[str] = set()
    for name, value in fields:
        if name not in RECORD_FIELDS:
            continue
        is_rcpt = name in RCPT_FIELDS
        if name in seen:
            records.append(current)
            current, seen = Rcpt(None), set()
        seen.add(name)
        words = value.split()
        if is_rcpt:
            if name == "final-recipient" or current.address is None:
                current.address = first_address(value) or current.address
        elif name == "action":
            current.action = words[0].lower() if words else None
        elif name == "status":
            current.status = status_code(value) or (words[0] if words else None)
        else:
            current.diagnostic = value.split(";", 1)[1].strip() if ";" in value else value
            if value.lower().startswith("x-unix"):
                current.diagnostic = f"x-unix; {current.diagnostic}"
    records.append(current)
    return [r for r in records if r.address or r.action or r.status or r.diagnostic]


# --- Amazon SES notifications -------------------------------------------------------------


def ses_json(text: str) -> dict[str, Any] | None:
    """The JSON object of an Amazon SES (or SNS-wrapped) notification, or None."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1].replace("!\n ", ""), strict=False)
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            data = json.loads(data["Message"], strict=False)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def ses_kind(data: dict[str, Any]) -> str:
    return str(data.get("notificationType") or data.get("eventType") or "")


def _ses_message_id(data: dict[str, Any]) -> str | None:
    mail = _dict(data.get("mail"))
    for item in _list(mail.get("headers")):
        if str(_dict(item).get("name", "")).lower() == "message-id":
            ids = mime.message_ids(str(_dict(item).get("value", "")))
            if ids:
                return ids[0]
    ids = mime.message_ids(str(_dict(mail.get("commonHeaders")).get("messageId") or ""))
    if ids:
        return ids[0]
    return str(mail["messageId"]) if mail.get("messageId") else None


def ses_complaint(text: str) -> Complaint | None:
    """The complaint of an Amazon SES complaint notification, or None."""
    data = ses_json(text)
    if data is None or ses_kind(data) != "Complaint":
        return None
    complaint = _dict(data.get("complaint"))
    rcpts = [_dict(r) for r in _list(complaint.get("complainedRecipients"))] or [{}]
    kind = str(complaint.get("complaintFeedbackType") or "abuse")
    return Complaint(
        feedback_type=kind,
        original_recipient=_lower(rcpts[0].get("emailAddress")),
        original_message_id=_ses_message_id(data),
        why=["Amazon SES notification: Complaint", f"Feedback-Type: {kind}"],
    )


def ses_bounce(text: str) -> tuple[list[Rcpt], list[str], str | None] | None:
    """The recipients, the evidence and the original's Message-ID of an Amazon SES bounce
    notification, or None."""
    data = ses_json(text)
    if data is None or ses_kind(data) != "Bounce":
        return None
    bounce = _dict(data.get("bounce"))
    rcpts = [
        Rcpt(
            address=_lower(item.get("emailAddress")),
            status=str(item.get("status") or "") or None,
            action=str(item.get("action") or "").lower() or None,
            diagnostic=str(item.get("diagnosticCode") or ""),
        )
        for item in map(_dict, _list(bounce.get("bouncedRecipients")))
    ]
    if not rcpts:
        return None
    why = ["Amazon SES notification: Bounce", f"bounceType: {bounce.get('bounceType')}"]
    return rcpts, why, _ses_message_id(data)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# --- reports without a delivery-status part -----------------------------------------------


def looks_like_bounce(
    msg: Message, report_type: str, region: str, original: Message | None
) -> list[str]:
    """Why a message without a delivery-status part reads as a non-delivery report.

    Empty when it does not: the sender must look like a mail system and the subject or
    the text say delivery failed, or, from anyone, the subject and the text both say so
    in a message that answers nothing. Quoted lines and vacation replies never count.
    """
    if report_type == "delivery-status":
        return ["multipart/report; report-type=delivery-status"]
    subject = decoded_subject(msg)
    if AUTO_REPLY_SUBJECT_RE.match(subject) or msg.get("X-Autoreply"):
        return []
    sender = mime.header(msg, "From")
    daemon = is_mail_system(msg)
    failure_subject = bool(BOUNCE_SUBJECT_RE.search(subject)) and not REPLY_PREFIX_RE.match(subject)
    body = QUOTE_LINE_RE.sub("", region[:4000]).lower()
    wording = sorted({m.group(0) for m in BOUNCE_BODY_RE.finditer(body)})
    why = []
    if daemon:
        why.append(f"from a mail system ({sender[:60] or 'Return-Path: <>'})")
    if failure_subject:
        why.append(f"subject {subject[:60]!r}")
    why.extend(f"text says {w!r}" for w in wording[:2])
    if daemon and (failure_subject or wording):
        return why
    # from anyone else, only with a recipient line as a mail server writes it
    answers = msg.get("In-Reply-To")
    if failure_subject and wording and not answers and recipient_hits(region, msg, original, False):
        return why
    return []


def decoded_subject(msg: Message) -> str:
    """The decoded subject, raw 8-bit and raw ISO-2022-JP (as some carriers send) included."""
    value = msg.get("Subject")
    if isinstance(value, email.header.Header):  # raw 8-bit bytes in the header
        try:
            chunks = email.header.decode_header(value)
        except Exception:
            return mime.header(msg, "Subject")
        return " ".join(
            mime.decode_bytes(text, None if charset == "unknown-8bit" else charset)
            if isinstance(text, bytes)
            else text
            for text, charset in chunks
        )
    subject = mime.header(msg, "Subject")
    if "\x1b$" in subject:
        subject = subject.encode("latin-1", "ignore").decode("iso2022_jp", "ignore")
    return subject


def is_mail_system(msg: Message) -> bool:
    """The sender is a mail server (MAILER-DAEMON, postmaster...) or the return path empty."""
    if mime.header(msg, "Return-Path").strip() == "<>":
        return True
    return bool(DAEMON_RE.search(mime.header(msg, "From")))


def text_recipients(msg: Message, text: str, region: str, original: Message | None) -> list[Rcpt]:
    """The failed recipients of a report without a delivery-status part: from RFC 3464
    fields quoted in its text, else from the lines naming them, else from the
    X-Failed-Recipients header or the returned original's To."""
    inline = dsn_records(
        (m.group(1).lower(), squash(m.group(2))) for m in DSN_FIELD_RE.finditer(text)
    )
    inline = [r for r in inline if r.address]
    hits = recipient_hits(region, msg, original)
    if inline:
        for rcpt in inline:
            rcpt.context = context_for(rcpt.address, hits, region)
        return inline
    if hits:
        order = list(dict.fromkeys(address for _pos, address in hits))
        return [Rcpt(a, context=context_for(a, hits, region)) for a in order]
    failed = [a.strip().lower() for a in str(msg.get("X-Failed-Recipients") or "").split(",")]
    failed = [a for a in failed if "@" in a] or _original_recipients(text, region, original)
    return [Rcpt(a) for a in failed] or [Rcpt(None)]


def recipient_hits(
    region: str, msg: Message, original: Message | None, loose: bool = True
) -> list[tuple[int, str]]:
    """(line start, address) for each line of the report that names a failed recipient.

    Only lines holding an "@" are read, lower-cased; the strong line forms win, then the
    weak ones, then (when `loose`) any address in angle brackets.
    """
    lines = _address_lines(region)
    not_rcpt = {m.group(1) for _s, line, prev in lines for m in NOT_RCPT_RE.finditer(prev + line)}
    own = _addresses(msg, "From") | _addresses(msg, "To") | not_rcpt
    if original is not None:
        own |= _addresses(original, "From")
    tiers = [(STRONG_RCPT_RES, not_rcpt), (WEAK_RCPT_RES, own)]
    for patterns, skip in [*tiers, (ANY_RCPT_RES, own)] if loose else tiers:
        hits: dict[int, str] = {}
        for start, line, _prev in lines:
            for pattern in patterns:
                for found in pattern.finditer(line):
                    address = _clean_address(found.group(1))
                    if address and address not in skip:
                        hits.setdefault(start, address)
        if hits:
            return sorted(hits.items())
    return []


def _address_lines(region: str) -> list[tuple[int, str, str]]:
    """(start, lower-cased line, lower-cased line before + newline) for lines with an "@"."""
    found: list[tuple[int, str, str]] = []
    start, prev = 0, ""
    for line in region.split("\n"):
        if "@" in line:
            found.append((start, line.lower(), prev.lower() + "\n"))
        start += len(line) + 1
        prev = line
    return found


def context_for(address: str | None, hits: list[tuple[int, str]], region: str) -> str:
    """The text from each line naming `address` up to the next line naming another one."""
    chunks: list[str] = []
    for index, (pos, found) in enumerate(hits):
        if found != address:
            continue
        end = next((p for p, other in hits[index + 1 :] if other != address), len(region))
        chunks.append(region[pos:end])
    return "\n".join(chunks)


def _original_recipients(text: str, region: str, original: Message | None) -> list[str]:
    if original is not None:
        found = mime.addresses(original, "To")
        if found:
            return found[:5]
    quoted = QUOTED_TO_RE.search(text[len(region) :])
    if quoted:
        return [a for a in map(_clean_address, ADDR_RE.findall(quoted.group(1))) if a][:5]
    return []


# --- small helpers ------------------------------------------------------------------------


def _addresses(msg: Message, name: str) -> set[str]:
    """The addresses in a header, lower-cased (a cheap regex, not a full address parse)."""
    return {a.lower() for a in ADDR_RE.findall(str(msg.get(name) or ""))}


def first_address(value: object) -> str | None:
    found = ADDR_RE.search(str(value)) if value else None
    return _clean_address(found.group(0)) if found else None


def _clean_address(address: str) -> str | None:
    address = address.strip().strip("<>").rstrip(".").lower()
    return address if "@" in address else None


def _lower(value: object) -> str | None:
    return str(value).strip().lower() if value else None


def squash(text: str) -> str:
    return " ".join(text.split())


def status_code(text: str | None) -> str | None:
    found = STATUS_RE.search(text) if text else None
    return found.group(0) if found and found.group(1) != "2" else None
