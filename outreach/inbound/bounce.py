"""Bounce reports, delivery reports and spam complaints.

How a message is read:

1. One pass over the MIME tree (`_scan`) collects what matters and keeps it for the
   three public functions, which the classifier calls one after another on the same
   message: delivery-status and feedback-report parts, the returned original
   (message/rfc822 or text/rfc822-headers) and the readable text, of which at most
   ~50 KB is looked at. The "error region" is that text with the returned copy of the
   original message cut off.
2. Complaints: an ARF feedback-report part (RFC 5965), an Amazon SES complaint
   notification (JSON), or Hotmail's form that only attaches the reported message.
3. Bounces: the failed recipients come from RFC 3464 fields (in a delivery-status part
   or quoted in the text), else from Amazon SES JSON, else from the lines the common
   mail servers write ("<a@b>:", an address alone on a line, "a@b on <date>",
   "RCPT TO:<a@b>", ...). Without a delivery-status part the message must also look
   machine-made: a mail-system sender (MAILER-DAEMON, postmaster, empty return path)
   with a failure subject or failure wording, so that replies quoting a bounce and
   vacation replies stay what they are.
4. A recipient's reason comes from the server's words: its diagnostic and the report
   text around its address are matched against phrase tables
   (`bounce_rules.REASON_PHRASES`, first match in table order wins). The SMTP stage
   refines it (an unknown user after DATA is a content filter, after MAIL FROM the
   sender was refused) and the enhanced status code is the fallback. A recipient is
   hard when the address itself is bad; a report is hard when any of its recipients is.

Where things are: this module finds the parts of a message, decides each recipient's
reason and builds the answers; `bounce_formats` reads the report formats (RFC 3464
fields, Amazon SES JSON, the free text of mail servers) into recipient records;
`bounce_rules` holds the patterns and tables, and says in more detail how a reason is
chosen.
"""

from __future__ import annotations

import binascii
import email
import re
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from email.message import Message

from outreach.inbound import mime
from outreach.inbound.bounce_formats import (
    Rcpt,
    context_for,
    decoded_subject,
    dsn_records,
    first_address,
    is_mail_system,
    looks_like_bounce,
    part_fields,
    recipient_hits,
    ses_bounce,
    ses_complaint,
    ses_json,
    ses_kind,
    squash,
    status_code,
    text_recipients,
)
from outreach.inbound.bounce_rules import (
    BOUNCE_SUBJECT_RE,
    CONTINUATION_RE,
    CUT_RE,
    DIAGNOSTIC_CHARS,
    EMBEDDED_RE,
    HARD_REASONS,
    HEADER_LINE_RE,
    JSON_START_RE,
    MSGID_LINE_RE,
    NOT_BASE64_RE,
    NOTIFIER_RE,
    OVERRIDING,
    REASON_CHARS,
    REASON_PHRASES,
    REPLY_PREFIX_RE,
    REPORT_PARTS,
    SCAN_CHARS,
    STAGE_NAMES,
    STAGE_NEEDLES,
    STAGE_RE,
    STATUS_REASONS,
    SUCCESS_ACTIONS,
    USER_STATUSES,
)
from outreach.inbound.types import BounceReport, Complaint, FailedRecipient

# --- the reason table, compiled -----------------------------------------------------------


def _needle(phrase: str) -> str | None:
    """The longest plain text every match of `phrase` must contain, for a cheap pre-check.

    Only runs outside groups and character classes count, and a character that a
    quantifier makes optional ends the run before it. None when no run is long enough
    or the phrase has a top-level alternative.
    """
    runs, run, depth, i = [], "", 0, 0
    while i < len(phrase):
        char, step = phrase[i], 1
        if char == "\\":
            char, step = phrase[i + 1 : i + 2], 2
            char = "" if char.isalnum() else char
        elif char == "[":
            step = phrase.index("]", i + 2) - i + 1
            char = ""
        elif char in "()":
            depth += 1 if char == "(" else -1
            char = ""
        elif char == "|" and not depth:
            return None
        elif char in "?*+{}|.^$":
            char = ""
        if depth or not char or phrase[i + step : i + step + 1] in ("?", "*", "{"):
            runs.append(run)
            run = ""
        else:
            run += char
        i += step
    best = max([*runs, run], key=len)
    return best if len(best) >= (3 if best.isascii() else 2) else None


def _compile_reason(phrases: tuple[str, ...]) -> tuple[tuple[str, ...] | None, re.Pattern[str]]:
    needles = [_needle(p) for p in phrases]
    keys = None if None in needles else tuple(n for n in needles if n)
    return keys, re.compile("|".join(f"(?:{p})" for p in phrases))


_REASONS = tuple((name, *_compile_reason(phrases)) for name, phrases in REASON_PHRASES)
_OVERRIDING_RE = re.compile(
    "|".join(f"(?:{p})" for name, phrases in REASON_PHRASES if name in OVERRIDING for p in phrases)
)

_SOURCES = ("diagnostic", "report text", "report text")  # what each text of _reason is


# --- what one pass over a message finds ----------------------------------------------------


@dataclass
class _Parts:
    """The parts of a message that matter here."""

    dsn: list[Message] = field(default_factory=list)
    feedback: list[Message] = field(default_factory=list)
    original: Message | None = None
    texts: list[str] = field(default_factory=list)
    report_type: str = ""
    text: str = ""  # the readable text, at most SCAN_CHARS
    region: str = ""  # the text before the returned copy of the original
    records: list[Rcpt] | None = None  # the delivery-status recipients, once read
    root: Message | None = None  # the message itself


_last = threading.local()  # per thread: (weak reference to a message, its parts)


def _scan(msg: Message) -> _Parts:
    """The parts of `msg`, computed once for the three calls the classifier makes."""
    cached: tuple[weakref.ref[Message], _Parts] | None = getattr(_last, "scan", None)
    if cached is not None and cached[0]() is msg:
        return cached[1]
    if not _may_be_report(msg):
        parts = _Parts(root=msg)  # ordinary mail: nothing to read
    else:
        parts = _collect(msg)
        if not parts.dsn and not parts.feedback and is_mail_system(msg):
            parts = _nested_report(parts) or parts
    _last.scan = (weakref.ref(msg), parts)
    return parts


def _may_be_report(msg: Message) -> bool:
    """Whether headers and MIME structure allow a report at all (cheap: no text decoded)."""
    ctype = msg.get_content_type()
    if ctype == "multipart/report" or is_mail_system(msg):
        return True
    subject = decoded_subject(msg)
    if BOUNCE_SUBJECT_RE.search(subject) and not REPLY_PREFIX_RE.match(subject):
        return True
    if ctype == "text/plain":
        return bool(NOTIFIER_RE.search(mime.header(msg, "From")))
    if not msg.is_multipart():
        return False
    return any(
        part.get_content_type() in REPORT_PARTS or "X-HmXmrOriginalRecipient" in part
        for part in mime.walk(msg)
    )


def _collect(msg: Message) -> _Parts:
    report_type = ""
    if msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").lower()
    parts = _Parts(report_type=report_type, root=msg)
    markup: list[Message] = []
    stack: list[Message] = [msg]
    budget = SCAN_CHARS
    while stack:
        part = stack.pop()
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global", "message/partial") and part is not msg:
            parts.original = parts.original or _attached(part)
        elif ctype == "text/rfc822-headers":
            parts.original = parts.original or _headers(_part_text(part))
        elif ctype in ("message/delivery-status", "message/global-delivery-status"):
            parts.dsn.append(part)
        elif ctype == "message/feedback-report":
            parts.feedback.append(part)
        elif part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
        elif ctype == "text/html":
            markup.append(part)
        elif budget > 0 and (ctype.startswith(("text/", "multipart/")) or part is msg):
            parts.texts.append(_part_text(part, budget))
            budget -= len(parts.texts[-1])
    if markup and not "".join(parts.texts).strip():
        parts.texts = [mime.html_to_text(_part_text(markup[0], SCAN_CHARS * 2))]
    text = "\n".join(parts.texts).replace("\r\n", "\n").replace("\r", "\n")
    parts.text = text[:SCAN_CHARS]
    parts.region = _error_region(parts.text)
    return parts


def _nested_report(parts: _Parts) -> _Parts | None:
    """A report forwarded inside another message: attached, or pasted as mbox text."""
    inner: Message | None = None
    if parts.original is not None and parts.original.get_content_type() == "multipart/report":
        inner = parts.original
    else:
        found = EMBEDDED_RE.search(parts.text)
        if found:
            inner = email.message_from_string(parts.text[found.end() :])
    if inner is None:
        return None
    nested = _collect(inner)
    return nested if nested.dsn else None


def _attached(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str) and payload.strip():
        return _headers(_part_text(part))
    return None


def _part_text(part: Message, limit: int = SCAN_CHARS) -> str:
    """The first `limit` characters of a leaf part's text, decoding no more than that."""
    try:
        payload = part.get_payload()
    except Exception:  # the stdlib itself fails on some charsets (idna, ...)
        return ""
    if not isinstance(payload, str):
        return mime.payload_text(part)[:limit]
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    chunk = payload[: limit * 2]
    try:
        if encoding == "base64":
            letters = NOT_BASE64_RE.sub("", chunk)
            data = binascii.a2b_base64(letters[: len(letters) // 4 * 4])
        elif encoding == "quoted-printable":
            data = binascii.a2b_qp(chunk.encode("ascii", "surrogateescape"))
        else:
            data = chunk.encode("ascii", "surrogateescape")
    except (ValueError, UnicodeEncodeError):
        return mime.payload_text(part)[:limit]
    return mime.decode_bytes(data, part.get_content_charset())[:limit]


def _headers(text: str) -> Message:
    """The headers that matter (Message-ID, To, From) of a returned header block."""
    headers = Message()
    for found in HEADER_LINE_RE.finditer(text[:SCAN_CHARS]):
        name = found.group(1)
        if headers.get(name) is None:
            headers[name] = squash(found.group(2))
    return headers


def _error_region(text: str) -> str:
    """The text before the returned copy of the original message."""
    found = CUT_RE.search(text)
    return text[: found.start()] if found and found.start() > 0 else text


# --- complaints ---------------------------------------------------------------------------


def read_complaint(msg: Message) -> Complaint | None:
    """A spam complaint (ARF, or the Amazon SES and Hotmail forms), or None."""
    ctype = msg.get_content_type()
    if not ctype.startswith("multipart/") and ctype != "text/plain":
        return None
    parts = _scan(msg)
    if parts.feedback or parts.report_type == "feedback-report":
        return _arf(parts)
    if ctype == "text/plain":
        return ses_complaint(parts.text) if JSON_START_RE.search(parts.text[:2000]) else None
    original = parts.original
    if original is not None and original.get("X-HmXmrOriginalRecipient"):
        return Complaint(
            feedback_type="abuse",
            original_recipient=first_address(original.get("X-HmXmrOriginalRecipient")),
            original_message_id=_message_id(original),
            why=["attached message carries X-HmXmrOriginalRecipient (Hotmail complaint)"],
        )
    return None


def _arf(parts: _Parts) -> Complaint:
    fields: dict[str, str] = {}
    for part in parts.feedback:
        for name, value in part_fields(part):
            fields.setdefault(name, value)
    kind = (fields.get("feedback-type") or "abuse").split()[0].lower() if fields else "abuse"
    why = ["multipart/report with report-type=feedback-report", f"Feedback-Type: {kind}"]
    recipient = first_address(fields.get("original-rcpt-to") or fields.get("removal-recipient"))
    if recipient is None and parts.original is not None:
        recipient = first_address(mime.header(parts.original, "To"))
    message_id = _message_id(parts.original) if parts.original is not None else None
    return Complaint(kind, recipient, message_id or _quoted_message_id(parts.text), why)


# --- bounces ------------------------------------------------------------------------------


def read_bounce(msg: Message) -> BounceReport | None:
    """The failed recipients of a non-delivery report; None for any other message."""
    parts = _scan(msg)
    rcpts = _dsn_recipients(parts)
    if rcpts:
        if all(_succeeded(r) for r in rcpts):
            return None
        why = [f"multipart/report; report-type={parts.report_type or 'delivery-status'}"]
        _add_contexts(rcpts, msg, parts)
    elif msg.get_content_type() == "text/plain" and JSON_START_RE.search(parts.text[:2000]):
        return _ses_report(parts.text)
    else:
        why = looks_like_bounce(msg, parts.report_type, parts.region, parts.original)
        if not why:
            return None
        rcpts = text_recipients(msg, parts.text, parts.region, parts.original)
    rcpts = [r for r in rcpts if not _succeeded(r)]
    return _report(rcpts, parts, why) if rcpts else None


def is_delivery_report(msg: Message) -> bool:
    """True for a delivery status report that says every recipient got the mail."""
    parts = _scan(msg)
    rcpts = _dsn_recipients(parts)
    if rcpts:
        return all(_succeeded(r) for r in rcpts)
    if msg.get_content_type() == "text/plain" and JSON_START_RE.search(parts.text[:2000]):
        data = ses_json(parts.text)
        return data is not None and ses_kind(data) == "Delivery"
    return False


def _succeeded(rcpt: Rcpt) -> bool:
    if rcpt.action:
        return rcpt.action in SUCCESS_ACTIONS
    return bool(rcpt.status and rcpt.status.startswith("2."))


def _report(rcpts: list[Rcpt], parts: _Parts, why: list[str]) -> BounceReport:
    single = len(rcpts) == 1
    failed: list[FailedRecipient] = []
    for rcpt in rcpts:
        done, evidence = _decide(rcpt, parts.region if single else "")
        failed.append(done)
        if rcpt.action:
            why.append(f"Action: {rcpt.action}")
        if done.status:
            why.append(f"Status: {done.status}")
        why.extend(evidence)
        why.append(
            f"{done.address or 'the recipient'}: {done.reason}" + (" (hard)" if done.hard else "")
        )
    return BounceReport(
        recipients=failed,
        hard=any(f.hard for f in failed),
        original_message_id=_original_message_id(parts),
        why=list(dict.fromkeys(why)),
    )


def _original_message_id(parts: _Parts) -> str | None:
    """The returned message's Message-ID: from the attached original, else from its copy
    quoted in the text, else from any part whose own headers carry one (a broken MIME
    boundary leaves the original's headers on a part)."""
    original = parts.original
    if original is not None:
        found = _message_id(original)
        payload = original.get_payload()
        if found is None and isinstance(payload, str):
            found = _quoted_message_id(payload[:SCAN_CHARS])
        if found:
            return found
    found = _quoted_message_id(parts.text[len(parts.region) :] or parts.text)
    if found is None and parts.root is not None:
        found = next(filter(None, map(_message_id, _subparts(parts.root))), None)
    return found


def _subparts(msg: Message) -> Iterable[Message]:
    parts = iter(mime.walk(msg))
    next(parts, None)
    return (p for p in parts if "Message-ID" in p)


def _decide(rcpt: Rcpt, region: str) -> tuple[FailedRecipient, list[str]]:
    """Status, reason and hardness of one recipient from its words and codes, and why."""
    diagnostic = squash(rcpt.diagnostic)
    context = squash(rcpt.context)
    status = status_code(diagnostic) or status_code(rcpt.status) or status_code(context)
    texts = [_unfold(diagnostic), _unfold(context), squash(region)]
    reason, evidence = _reason(texts, status, rcpt.action)
    if rcpt.address and "|" in rcpt.address:
        reason, evidence = "mailererror", ["delivered to a program (a pipe)"]
    shown = diagnostic or context or texts[2]
    failed = FailedRecipient(
        address=rcpt.address,
        status=status,
        reason=reason,
        hard=reason in HARD_REASONS,
        diagnostic=shown[:DIAGNOSTIC_CHARS] or None,
    )
    return failed, evidence


def _reason(texts: list[str], status: str | None, action: str | None) -> tuple[str, list[str]]:
    """The reason the words give, refined by the SMTP stage and codes; and the evidence."""
    lowered = [t[:REASON_CHARS].lower() for t in texts]
    found, evidence = _worded_reason(lowered)
    detail = status.partition(".")[2] if status else ""
    if found is None and detail:
        found = STATUS_REASONS.get(detail) or STATUS_REASONS.get(detail.split(".")[0] + ".0")
        if found:
            evidence.append(f"status {status} means {found}")
    stage = next((s for s in map(_stage, lowered) if s), None)
    staged = _by_stage(found, detail, stage)
    if staged != found:
        evidence.append(f"refused at {STAGE_NAMES[stage or '']}")
        found = staged
    if found in (None, "networkerror", "systemerror") and (detail == "4.7" or action == "delayed"):
        found = "expired"
        evidence.append("delayed" if action == "delayed" else "given up after retrying")
    elif found is None and status and status.startswith("4."):
        found = "expired"
        evidence.append(f"temporary status {status}")
    found = found.rstrip("*") if found else None
    return found or ("onhold" if any(texts) else "undefined"), evidence


def _worded_reason(lowered: list[str]) -> tuple[str | None, list[str]]:
    """The reason of the first text (diagnostic, context, report) with a known phrase."""
    for source, text in zip(_SOURCES, lowered, strict=True):
        found, phrase = _phrase_reason(text)
        if found:
            evidence = [f"{source} says {phrase!r}"]
            if found == "userunknown":  # "user unknown" in the code, "mailbox full" in the text
                text = next((t for t in lowered[1:] if _OVERRIDING_RE.search(t)), "")
                if text:
                    found, phrase = _phrase_reason(text)
                    evidence.append(f"report text says {phrase!r}")
            return found, evidence
    return None, []


def _by_stage(found: str | None, detail: str, stage: str | None) -> str | None:
    """The reason as the SMTP stage it was refused at confirms it.

    Refused after MAIL FROM, the sender was the problem; refused after DATA, or with a
    status code that is not about addressing and no sign of RCPT TO, an unknown user is
    a filter's answer; refused on connecting, the client was blocked.
    """
    if found in ("userunknown", "hostunknown") and detail not in USER_STATUSES:
        if stage == "mail" or detail in ("1.7", "1.8"):
            return "rejected"
        late = stage == "data" or (
            detail and stage != "rcpt" and not detail.startswith(("1.", "2.1"))
        )
        return "filtered" if found == "userunknown" and late else found
    if stage == "connect" and found in (None, "rejected"):
        return "blocked"
    if stage == "mail" and found is None:
        return "rejected"
    return found


def _phrase_reason(text: str) -> tuple[str | None, str]:
    """The first reason in table order whose phrases occur in `text`, and the words."""
    if text:
        for name, needles, pattern in _REASONS:
            if needles is None or any(map(text.__contains__, needles)):
                found = pattern.search(text)
                if found:
                    return name, found.group(0)
    return None, ""


def _stage(text: str) -> str | None:
    """The SMTP step the text says the server refused at: rcpt, mail, data or connect."""
    if not any(map(text.__contains__, STAGE_NEEDLES)):
        return None
    found = STAGE_RE.search(text)
    if found is None:
        return None
    for group in ("rcpt", "data", "mail"):
        if found.group(group):
            return group
    step = found.group("step")
    if step.startswith("rcpt"):
        return "rcpt"
    if step.startswith("mail"):
        return "mail"
    return "data" if step.endswith("data") else "connect"


# --- delivery-status recipients -----------------------------------------------------------


def _dsn_recipients(parts: _Parts) -> list[Rcpt]:
    if parts.records is None:
        fields: list[tuple[str, str]] = []
        for part in parts.dsn:
            fields.extend(part_fields(part))
        parts.records = dsn_records(fields)
    return [replace(r) for r in parts.records]


def _add_contexts(rcpts: list[Rcpt], msg: Message, parts: _Parts) -> None:
    """Give each DSN recipient the lines of the human-readable report about it."""
    hits = recipient_hits(parts.region, msg, parts.original)
    named = list(dict.fromkeys(address for _pos, address in hits))
    unnamed = [r for r in rcpts if r.address is None]
    if unnamed and len(unnamed) == len(named) == len(rcpts):
        for rcpt, address in zip(unnamed, named, strict=True):
            rcpt.address = address
    for rcpt in rcpts:
        rcpt.context = context_for(rcpt.address, hits, parts.region)


def _ses_report(text: str) -> BounceReport | None:
    """The report of an Amazon SES bounce notification, or None."""
    found = ses_bounce(text)
    if found is None:
        return None
    rcpts, why, message_id = found
    report = _report(rcpts, _Parts(), why)
    return BounceReport(report.recipients, report.hard, message_id, report.why)


# --- small helpers ------------------------------------------------------------------------


def _message_id(msg: Message) -> str | None:
    ids = mime.message_ids(mime.header(msg, "Message-ID"))
    return ids[0] if ids else None


def _quoted_message_id(text: str) -> str | None:
    found = MSGID_LINE_RE.search(text)
    return found.group(1) if found else None


def _unfold(text: str) -> str:
    """A multi-line SMTP reply read as one sentence: repeated "550-5.7.1" prefixes go."""
    first = CONTINUATION_RE.search(text)
    if first is None:
        return text
    return f"{text[: first.end()]} {squash(CONTINUATION_RE.sub('', text[first.end() :]))}"
