"""Automatic replies: out-of-office and vacation answers, and when the person is back.

This runs after bounce and complaint detection said no. A message is an auto-reply when
any of these holds:

1. a header says so: `Auto-Submitted` with any value but "no" (RFC 3834), `X-Autoreply`,
   `X-Autorespond`, `X-Autoresponder`, `Precedence` or `X-Precedence` of bulk, junk or
   auto_reply, Apple's `X-Apple-Action: VACATION`, or Exchange's
   `X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent`;
2. the subject starts with an auto-reply marker ("Automatic reply:", "Out of Office",
   "Auto:", "Abwesenheitsnotiz", "Réponse automatique", "Respuesta automática",
   "Frånvaro", "Automatiskt svar"...); generic words such as "Absence" or "Vacation"
   count only as the subject's first word followed by ":" / "-" or nothing else; a
   subject starting with "Re:" never counts (that is a person answering);
3. the top of the new text (its first 600 characters, quoted history cut off) says so:
   either it calls itself automatic ("This is an automatic reply", "Dies ist eine
   automatische Antwort"...), or it states a present or future absence ("I am out of the
   office", "Ich bin ... nicht im Büro", "Je suis absent", "Estoy fuera de la oficina",
   "Jag är ledig"...) together with a second sign (an "until"/"back on" date phrase,
   "limited access to email", "upon my return", "for urgent matters"...) or with a
   supporting header: `X-Auto-Response-Suppress` (Outlook sets it on its OOF replies but
   some ordinary clients do too, so it never decides alone), `X-MS-Exchange-Inbox-Rules-Loop`
   or an empty `Return-Path: <>`.

   Body evidence alone is overruled when the new text also reads as a person's answer:
   it asks a question, or shows interest, refusal or an unsubscribe request ("I was on
   vacation last week, but yes let's talk" is a reply; past tense never counts anyway),
   unless it points to help for urgent matters, which only canned notices do ("for
   urgent matters call me on my mobile" is no sign of interest).

`Precedence: list` (a mailing list) is not evidence. The return date is read (see
`outreach.inbound.dates`) from the new text, then the subject, then Apple's vacation end
date in `X-Apple-Criteria`.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from email.message import Message

from outreach.inbound import dates, mime, reply
from outreach.inbound.types import AutoReply, Intent

TOP_CHARS = 600  # how far into the new text body evidence may start

_AUTO_SUBMITTED_NO = {"", "no"}
_PRECEDENCE_AUTO = {"bulk", "junk", "auto_reply", "auto-reply", "autoreply"}
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply")
_FALSE_VALUES = {"no", "false", "0", "off"}
_APPLE_END_RE = re.compile(r"endDate=(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})", re.I)

_SUBJECT_STRONG_RE = re.compile(
    r"^\s*(?:\[[^\]]{0,30}\]\s*)?(?P<m>automatic\s+reply|auto(?:matic)?[\s-]?(?:reply|response|"
    r"responder)|"
    r"autoreply|auto:|out\s+of\s+(?:the\s+)?office|ooo\b|abwesenheitsnotiz|abwesenheit|"
    r"automatische\s+(?:antwort|abwesenheitsnotiz)|r[ée]ponse\s+automatique|"
    r"absent(?:e)?\s+du\s+bureau|"
    r"absence\s+du\s+bureau|respuesta\s+autom[áa]tica|fuera\s+de\s+(?:la\s+)?oficina|"
    r"automatiskt\s+svar|autosvar|"
    r"ej\s+p[åa]\s+kontoret|inte\s+p[åa]\s+kontoret|fr[åa]nvaromeddelande|semesterh[äa]lsning)",
    re.I,
)
_SUBJECT_WEAK_RE = re.compile(
    r"^\s*(?P<m>absence|absent|away|vacation|on\s+vacation|on\s+leave|holiday|urlaub|abwesend|"
    r"im\s+urlaub|cong[ée]s?|en\s+cong[ée]s?|vacances|en\s+vacances|ausente|vacaciones|"
    r"de\s+vacaciones|fr[åa]nvaro|fr[åa]nvarande|semester|ledig)\s*(?::|-|\u2013|$)",
    re.I,
)
_REPLY_PREFIX_RE = re.compile(r"^\s*(?:re|aw|sv|vs|wg|fw|fwd|tr|rv)\s*:", re.I)

_AUTO_STATEMENT_RE = re.compile(
    r"\bthis\s+is\s+an?\s+(?:automatic|automated|auto-?generated|auto)\s*(?:reply|response|"
    r"message|e-?mail|notification)|\b(?:automatic|automated)\s+(?:reply|response)|"
    r"\bauto[\s-]?(?:reply|response|responder)\b|\bout[\s-]of[\s-]office\s+(?:auto)?reply|"
    r"\bdies\s+ist\s+eine\s+automatisch(?:e|\s+generierte)\s+(?:antwort|nachricht|e-?mail|"
    r"abwesenheitsnotiz)|\bautomatische\s+(?:antwort|abwesenheitsnotiz|benachrichtigung)|"
    r"\babwesenheitsnotiz\b|\b(?:r[ée]ponse|message)\s+automatique|"
    r"\brespuesta\s+autom[áa]tica|\bmensaje\s+autom[áa]tico|"
    r"\bautomatiskt\s+(?:svar|meddelande|genererat)|\bautosvar\b|\bfr[åa]nvaromeddelande",
    re.I,
)
_ABSENCE_RE = re.compile(
    r"\b(?:i\s+am|i'm|i\s+will\s+be|i'll\s+be|i\s+shall\s+be)\s+(?:currently\s+|now\s+|"
    r"presently\s+)?"
    r"(?:out\s+of\s+(?:the\s+)?office|ooo\b|away|off\s+(?:work|until|on|from)|"
    r"on\s+(?:annual\s+|parental\s+|maternity\s+|paternity\s+|sick\s+|medical\s+|study\s+)?"
    r"(?:leave|vacation|holidays?|pto|sabbatical|a\s+business\s+trip)|travell?ing|"
    r"out\s+(?:of\s+the\s+country|until|on|from|today|sick)|not\s+in\s+the\s+office|"
    r"not\s+available|unavailable)|"
    r"\bout\s+of\s+(?:the\s+)?office\b|\b(?:our\s+)?offices?\s+(?:is|are|will\s+be)\s+closed|"
    r"\bich\s+bin\s+(?:[^\n]{0,50}?\s)?(?:nicht\s+(?:im\s+b(?:ü|ue)ro|erreichbar|im\s+haus|"
    r"am\s+arbeitsplatz)|"
    r"abwesend|im\s+urlaub|au(?:ß|ss)er\s+haus|in\s+elternzeit|auf\s+gesch(?:ä|ae)ftsreise)|"
    r"\bbefinde\s+mich\s+(?:[^\n]{0,50}?\s)?(?:im\s+urlaub|nicht\s+im\s+b(?:ü|ue)ro|"
    r"au(?:ß|ss)er\s+haus|auf\s+(?:einer\s+)?gesch(?:ä|ae)ftsreise|in\s+elternzeit)|"
    r"\bnicht\s+im\s+b(?:ü|ue)ro\b|\bunser\s+b(?:ü|ue)ro\s+ist\s+[^\n]{0,40}geschlossen|"
    r"\bje\s+(?:suis|serai)\s+(?:actuellement\s+|pr[ée]sentement\s+)?(?:absente?|"
    r"en\s+(?:cong[ée]s?|"
    r"vacances|d[ée]placement|cong[ée]\s+maternit[ée]|arr[êe]t)|hors\s+du\s+bureau|"
    r"en\s+dehors\s+du\s+bureau)|\babsente?\s+du\s+bureau|"
    r"\b(?:estoy|estar[ée]|me\s+encuentro|me\s+encontrar[ée])\s+(?:actualmente\s+)?"
    r"(?:fuera\s+de\s+(?:la\s+)?oficina|de\s+vacaciones|ausente|de\s+viaje|fuera|de\s+baja|"
    r"de\s+permiso)|\bfuera\s+de\s+la\s+oficina\b|"
    r"\bjag\s+(?:är|kommer\s+att\s+vara)\s+(?:för\s+närvarande\s+|just\s+nu\s+)?(?:ledig|"
    r"på\s+semester|tjänstledig|föräldraledig|bortrest|borta|frånvarande|inte\s+på\s+kontoret|"
    r"ej\s+på\s+kontoret|på\s+tjänsteresa|sjukskriven|utomlands)|\bjag\s+har\s+semester|"
    r"\bej\s+på\s+kontoret\b",
    re.I,
)
_SUPPORT_RE = re.compile(
    r"\b(?:until|till|through|returning|return\s+on|back\s+(?:on|in)|be\s+back)\b|"
    r"\blimited\s+(?:access|connectivity)|\b(?:no|without)\s+access\s+to\s+(?:my\s+)?e-?mail|"
    r"\b(?:upon|on|after)\s+my\s+return|\bwhen\s+i\s+(?:return|get\s+back|am\s+back|'m\s+back)|"
    r"\burgent\s+(?:matters|requests|inquiries|enquiries|issues|questions)|\bif\s+(?:this\s+is|"
    r"it\s+is|"
    r"it's|your\s+(?:matter|request)\s+is)\s+urgent|\bin\s+case\s+of\s+urgen|"
    r"\bdelayed\s+response|\bwill\s+not\s+be\s+(?:forwarded|read)|"
    r"\bbis\b|\bwieder\b|\bnach\s+meiner\s+r(?:ü|ue)ckkehr|\bin\s+dringenden\s+f(?:ä|ae)llen|"
    r"\b(?:wird|werden)\s+nicht\s+weitergeleitet|\beingeschr(?:ä|ae)nkt\w*|\bkeinen\s+zugriff|"
    r"\bjusqu|\bde\s+retour\b|\b(?:d[èe]s|[àa])\s+mon\s+retour|\ben\s+cas\s+d'urgence|"
    r"\bpour\s+toute\s+(?:urgence|demande\s+urgente)|\bacc[èe]s\s+limit[ée]|"
    r"\bhasta\b|\bregres\w+|\bde\s+vuelta\b|\ba\s+mi\s+(?:regreso|vuelta)|"
    r"\ben\s+caso\s+de\s+urgencia|"
    r"\b(?:asuntos|temas)\s+urgentes|\bacceso\s+limitado|"
    r"\btill\s+och\s+med|\bt\.o\.m\b|\btill\b|\btillbaka\b|\båter\b|\bbrådskande|"
    r"\bbegränsad\s+(?:tillgång|åtkomst)|\bnär\s+jag\s+(?:är\s+tillbaka|kommer\s+tillbaka|"
    r"återvänder)",
    re.I,
)
_URGENT_RE = re.compile(
    r"\burgen(?:t|cy|cia|ce)\b|\burgente[s]?\b|\bdringende?n?\b|\bbr(?:å|a)dskande\b|"
    r"\bimmediate\s+(?:help|assistance)",
    re.I,
)


def detect(msg: Message, text: str, received: date) -> AutoReply | None:
    """An AutoReply with its reasons and return date, or None for anything else."""
    strong, support = _header_evidence(msg)
    subject = mime.header(msg, "Subject")
    why = list(strong)
    marker = _subject_marker(subject)
    if marker:
        why.append(f"subject starts with '{marker}'")
    split = reply.split_reply(text)
    top = split.unquoted[:TOP_CHARS]
    body, self_declared = _body_evidence(top, bool(support))
    if body and not why and _reads_as_person(split.text, self_declared):
        body = []
    why.extend(body)
    if not why:
        return None
    why.extend(f"{reason} (supporting)" for reason in support if body)
    back = _return_date(msg, split.unquoted, subject, received)
    if back is not None:
        why.append(f"back on {back[0].isoformat()}: {back[1]}")
    return AutoReply(why=why, return_date=back[0] if back else None)


def _header_evidence(msg: Message) -> tuple[list[str], list[str]]:
    """Reasons from headers that decide alone, and ones that only support other evidence."""
    strong: list[str] = []
    support: list[str] = []
    submitted = mime.header(msg, "Auto-Submitted")
    if submitted.split(";")[0].split("(")[0].strip().lower() not in _AUTO_SUBMITTED_NO:
        strong.append(f"Auto-Submitted: {submitted} (RFC 3834)")
    for name in _AUTO_HEADERS:
        value = mime.header(msg, name)
        if msg.get(name) is not None and value.strip().lower() not in _FALSE_VALUES:
            strong.append(f"{name}: {value}" if value else f"{name} header present")
    for name in ("Precedence", "X-Precedence"):
        value = mime.header(msg, name).strip().lower()
        if value in _PRECEDENCE_AUTO:
            strong.append(f"{name}: {value}")
    if "vacation" in mime.header(msg, "X-Apple-Action").lower():
        strong.append("X-Apple-Action: VACATION (Apple Mail vacation reply)")
    source = mime.header(msg, "X-MS-Exchange-Generated-Message-Source")
    if "mailbox rules agent" in source.lower():
        strong.append(f"X-MS-Exchange-Generated-Message-Source: {source} (Exchange rule reply)")
    suppress = mime.header(msg, "X-Auto-Response-Suppress")
    if suppress:
        support.append(f"X-Auto-Response-Suppress: {suppress}")
    if msg.get("X-MS-Exchange-Inbox-Rules-Loop") is not None:
        support.append("X-MS-Exchange-Inbox-Rules-Loop present")
    if mime.header(msg, "Return-Path").strip() == "<>":
        support.append("empty Return-Path")
    return strong, support


def _subject_marker(subject: str) -> str | None:
    """The auto-reply marker the subject starts with, as written."""
    if not subject or _REPLY_PREFIX_RE.match(subject):
        return None
    found = _SUBJECT_STRONG_RE.match(subject) or _SUBJECT_WEAK_RE.match(subject)
    if not found:
        return None
    end = found.end("m")
    if end < len(subject) and subject[end] == ":":
        end += 1
    return subject[found.start("m") : end].strip()


def _body_evidence(top: str, supported: bool) -> tuple[list[str], bool]:
    """Reasons from the top of the new text ([] when not clearly automatic), and whether
    the text calls itself automatic."""
    auto = _AUTO_STATEMENT_RE.search(top)
    if auto:
        return [f"body says '{_phrase(auto.group(0))}'"], True
    absence = _ABSENCE_RE.search(top)
    if not absence:
        return [], False
    said = f"body says '{_phrase(absence.group(0))}'"
    sign = (
        _SUPPORT_RE.search(top, absence.end())
        or _SUPPORT_RE.search(top[: absence.start()])
        or _SUPPORT_RE.search(top, absence.start())
    )
    if sign:
        return [f"{said} and '{_phrase(sign.group(0))}'"], False
    return ([said] if supported else []), False


def _reads_as_person(text: str, self_declared: bool) -> bool:
    """Whether new text reads as a person's answer rather than a canned notice.

    Text that points to help for urgent matters is canned, even if it then says "call me".
    """
    if _URGENT_RE.search(text):
        return False
    if "?" in text and not self_declared:
        return True
    intent, _reason = reply.intent_of(text)
    return intent in (Intent.INTERESTED, Intent.NOT_INTERESTED, Intent.UNSUBSCRIBE)


def _return_date(msg: Message, body: str, subject: str, received: date) -> tuple[date, str] | None:
    """The return date with where it came from: body, then subject, then Apple's header."""
    for source, text in (("text", body), ("subject", subject)):
        found = dates.return_date(text, received) if text else None
        if found is not None:
            return found.day, f"{source} says '{found.phrase}'"
    return _apple_end(msg, received)


def _apple_end(msg: Message, received: date) -> tuple[date, str] | None:
    """The day after Apple's vacation end, rounded to the nearest UTC midnight.

    The end instant is the last second of a local day in an unknown zone; rounding to the
    nearest midnight recovers that day for any offset within twelve hours of UTC.
    """
    found = _APPLE_END_RE.search(mime.header(msg, "X-Apple-Criteria"))
    if not found:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups())
    try:
        end = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    back = (end + timedelta(seconds=1, hours=12)).date()
    if back < received or back - received > dates.MAX_AHEAD:
        return None
    return back, f"X-Apple-Criteria endDate={end.isoformat()}Z"


def _phrase(matched: str) -> str:
    return " ".join(matched.split())
