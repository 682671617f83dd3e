"""Auto-replies: detection by headers, subject and body, and the return date."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from email.header import Header
from email.message import Message
from pathlib import Path

import pytest

from outreach.inbound import autoreply, mime
from outreach.inbound.classify import classify_bytes
from outreach.inbound.dates import guess_language, return_date
from outreach.inbound.types import AutoReply, Kind

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "autoreplies"
CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "bounces"
RECEIVED = date(2026, 12, 7)  # a Monday
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

DEC = lambda day: date(2026, 12, day)  # noqa: E731

RETURN_DATES = [
    # English
    ("I will be back on 14 December.", RECEIVED, DEC(14)),
    ("I am returning on Monday, December 14th.", RECEIVED, DEC(14)),
    ("I am out of the office until 12/14/2026.", RECEIVED, DEC(14)),
    ("I am out of the office until 14/12/2026.", RECEIVED, DEC(14)),
    ("I'm out of the office until 01/05/2027.", RECEIVED, date(2027, 1, 5)),
    ("Back 2026-12-14.", RECEIVED, DEC(14)),
    ("I'm back on Monday.", RECEIVED, DEC(14)),
    ("I will be back on Wednesday.", RECEIVED, DEC(9)),
    ("I am away from 1 to 14 December.", RECEIVED, DEC(14)),
    ("Out of office December 10-14.", RECEIVED, DEC(14)),
    ("I am out through Friday, December 11.", RECEIVED, DEC(12)),
    ("I am away up to and including 11 December.", RECEIVED, DEC(12)),
    ("I'm off until the 14th.", RECEIVED, DEC(14)),
    ("I'll be back tomorrow.", RECEIVED, DEC(8)),
    ("I will be back on 4 January.", DEC(20), date(2027, 1, 4)),
    ("I'm back on Monday, 4 January.", DEC(28), date(2027, 1, 4)),
    # German
    ("Ich bin bis zum 14. Dezember nicht im Büro.", RECEIVED, DEC(14)),
    ("Ich bin bis einschließlich 14.12. nicht im Büro.", RECEIVED, DEC(15)),
    ("Ab dem 15.12.2026 bin ich wieder im Büro.", RECEIVED, DEC(15)),
    ("Ich bin vom 1. bis 11. Dezember im Urlaub.", RECEIVED, DEC(11)),
    ("Am Montag bin ich wieder da.", RECEIVED, DEC(14)),
    ("Ich bin bis Freitag, 11. Dezember 2026 (einschließlich) abwesend.", RECEIVED, DEC(12)),
    ("Ich bin bis 8. Januar im Urlaub.", DEC(22), date(2027, 1, 8)),
    # French
    ("Je serai de retour le 14 décembre.", RECEIVED, DEC(14)),
    ("Je suis absente jusqu'au lundi 14 décembre.", RECEIVED, DEC(14)),
    ("Je suis absent jusqu'au 11 décembre inclus.", RECEIVED, DEC(12)),
    ("Je suis en congés du 1er au 11 décembre.", RECEIVED, DEC(11)),
    ("Je suis absent jusqu'au 05/01/2027.", RECEIVED, date(2027, 1, 5)),
    # Spanish
    ("Estoy fuera de la oficina hasta el 14 de diciembre.", RECEIVED, DEC(14)),
    ("Regreso el lunes 14 de diciembre.", RECEIVED, DEC(14)),
    ("Estoy de vacaciones hasta el 11 de diciembre inclusive.", RECEIVED, DEC(12)),
    ("Estaré fuera del 1 al 11 de diciembre.", RECEIVED, DEC(11)),
    ("Estaré de vacaciones hasta el 05/01/2027.", RECEIVED, date(2027, 1, 5)),
    # Swedish
    ("Jag är tillbaka den 14 december.", RECEIVED, DEC(14)),
    ("Jag är ledig till och med 14/12.", RECEIVED, DEC(15)),
    ("Jag är på semester t.o.m. 11 december.", RECEIVED, DEC(12)),
    ("Jag är ledig till den 14 december.", RECEIVED, DEC(14)),
    ("Jag är tillbaka på måndag.", RECEIVED, DEC(14)),
    ("Jag är ledig 2026-12-01 \u2013 2026-12-11.", RECEIVED, DEC(11)),
    # no answer
    ("I will respond to your email when I return.", RECEIVED, None),
    ("Thank you for your email of 10 December, I will get back to you.", RECEIVED, None),
    ("I am in meetings until 5 pm.", RECEIVED, None),
    ("Ich bin bis 14 Uhr im Termin.", RECEIVED, None),
    ("I am out of the office until 30 November.", RECEIVED, None),  # stale notice
    ("I will be back on 14 December 2025.", RECEIVED, None),  # in the past
    ("I will be back on 14 December 2028.", RECEIVED, None),  # more than a year ahead
]


@pytest.mark.parametrize(("text", "received", "expected"), RETURN_DATES)
def test_return_date(text: str, received: date, expected: date | None) -> None:
    found = return_date(text, received)
    assert (found.day if found else None) == expected, found


def test_return_date_prefers_back_over_until() -> None:
    text = "Ich bin bis einschließlich 11.12. nicht im Büro. Ab Montag, 14.12., bin ich wieder da."
    found = return_date(text, RECEIVED)
    assert found is not None
    assert (found.day, found.rule) == (DEC(14), "back")
    assert "14.12." in found.phrase


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am out until 05/01/2027.", date(2027, 5, 1)),  # English: month first
        ("Je suis absent jusqu'au 05/01/2027.", date(2027, 1, 5)),
        ("Ich bin bis 05/01/2027 nicht da.", date(2027, 1, 5)),
        ("I am out until 05.01.2027.", date(2027, 1, 5)),  # dots: day first in any language
    ],
)
def test_numeric_date_order_follows_language(text: str, expected: date) -> None:
    found = return_date(text, RECEIVED)
    assert found is not None
    assert found.day == expected


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("I am out of the office until Monday, please contact Jane.", "en"),
        ("Ich bin bis zum 14. Dezember nicht im Büro und habe keinen Zugriff.", "de"),
        ("Je suis absente jusqu'au 14 décembre, merci de votre message.", "fr"),
        ("Estoy fuera de la oficina hasta el 14 de diciembre.", "es"),
        ("Jag är ledig till och med den 14 december och läser inte min e-post.", "sv"),
    ],
)
def test_guess_language(text: str, language: str) -> None:
    assert guess_language(text) == language


# --- detection -----------------------------------------------------------------------


def _encoded(headers: str) -> str:
    """Headers with non-ASCII values RFC 2047-encoded, as a mail client sends them."""
    lines = []
    for line in headers.strip().split("\n"):
        name, _, value = line.partition(": ")
        if not value.isascii():
            value = Header(value, "utf-8").encode()
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _message(headers: str, body: str = "Thanks, talk soon.") -> tuple[Message, str]:
    raw = (
        "From: Ann <ann@example.org>\nTo: sam@example.com\n"
        "Date: Mon, 7 Dec 2026 09:00:00 +0000\n"
        f"{_encoded(headers)}\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
    )
    msg = mime.parse(raw.encode("utf-8"))
    return msg, mime.text_body(msg)


def _detect(headers: str, body: str = "Thanks, talk soon.") -> AutoReply | None:
    msg, text = _message(headers, body)
    return autoreply.detect(msg, text, RECEIVED)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied (RFC 3834)"),
        ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-generated (RFC 3834)"),
        ("X-Autoreply: yes", "X-Autoreply: yes"),
        ("X-Autorespond: Vacation", "X-Autorespond: Vacation"),
        ("Precedence: bulk", "Precedence: bulk"),
        ("Precedence: junk", "Precedence: junk"),
        ("Precedence: auto_reply", "Precedence: auto_reply"),
        ("X-Precedence: auto_reply", "X-Precedence: auto_reply"),
        ("X-Apple-Action: VACATION", "X-Apple-Action: VACATION (Apple Mail vacation reply)"),
        (
            "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
            "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent (Exchange rule reply)",
        ),
    ],
)
def test_header_says_auto_reply(header: str, reason: str) -> None:
    found = _detect(f"Subject: Re: Quick question\n{header}")
    assert found is not None
    assert reason in found.why


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: no",
        "Precedence: list\nList-Id: HR leaders <hr.lists.example.org>",
        "X-Auto-Response-Suppress: All",
        "X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply",
        "X-MS-Exchange-Inbox-Rules-Loop: ann@example.org",
    ],
)
def test_header_alone_is_not_enough(header: str) -> None:
    assert _detect(f"Subject: Re: Quick question\n{header}", "Sounds good, see you then.") is None


def test_suppress_header_supports_a_plain_absence_statement() -> None:
    body = "I am out of the office."
    assert _detect("Subject: Quick question", body) is None
    found = _detect("Subject: Quick question\nX-Auto-Response-Suppress: All", body)
    assert found is not None
    assert "X-Auto-Response-Suppress: All (supporting)" in found.why


@pytest.mark.parametrize(
    ("subject", "marker"),
    [
        ("Automatic reply: Quick question", "Automatic reply:"),
        ("Out of Office: Quick question", "Out of Office:"),
        ("Out of office", "Out of office"),
        ("Auto: Quick question", "Auto:"),
        ("Autoreply: Quick question", "Autoreply:"),
        ("Auto Reply: Nyaan", "Auto Reply:"),
        ("Abwesenheitsnotiz: Kurze Frage", "Abwesenheitsnotiz:"),
        ("Automatische Antwort: Kurze Frage", "Automatische Antwort:"),
        ("Réponse automatique : Une question", "Réponse automatique"),
        ("Absence du bureau", "Absence du bureau"),
        ("Absence: Une question", "Absence:"),
        ("Respuesta automática: Una pregunta", "Respuesta automática:"),
        ("Fuera de la oficina", "Fuera de la oficina"),
        ("Frånvaro: Snabb fråga", "Frånvaro:"),
        ("Automatiskt svar: Snabb fråga", "Automatiskt svar:"),
        ("Ej på kontoret", "Ej på kontoret"),
        ("[EXTERNAL] Automatic reply: Quick question", "Automatic reply:"),
    ],
)
def test_subject_says_auto_reply(subject: str, marker: str) -> None:
    found = _detect(f"Subject: {subject}", "Hello.")
    assert found is not None
    assert f"subject starts with '{marker}'" in found.why


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Automatic reply: Quick question",
        "Re: Out of office policy",
        "AW: Abwesenheitsnotiz",
        "Absence management for Acme",
        "Vacation planning tool",
    ],
)
def test_subject_without_marker(subject: str) -> None:
    assert _detect(f"Subject: {subject}", "Sounds good.") is None


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (
            "Thank you for your email. I am out of the office until 14 December with "
            "limited access to email.",
            "body says 'I am out of the office'",
        ),
        ("This is an automatic reply. Your message has been received.", "automatic reply"),
        (
            "Vielen Dank für Ihre Nachricht. Ich bin bis zum 14. Dezember nicht im Büro. "
            "In dringenden Fällen wenden Sie sich bitte an Petra.",
            "nicht im Büro",
        ),
        (
            "Bonjour, je suis absente jusqu'au 14 décembre. Je vous répondrai dès mon retour.",
            "je suis absente",
        ),
        (
            "Hola, estoy fuera de la oficina hasta el 14 de diciembre sin acceso al correo.",
            "estoy fuera de la oficina",
        ),
        ("Hej! Jag är ledig till och med 14/12 och läser inte min e-post.", "Jag är ledig"),
    ],
)
def test_body_says_auto_reply(body: str, phrase: str) -> None:
    found = _detect("Subject: Quick question", body)
    assert found is not None
    assert any(phrase.lower() in reason.lower() for reason in found.why), found.why


@pytest.mark.parametrize(
    "body",
    [
        "I was on vacation last week, but yes let's talk.",
        "Hi Sam, sorry, I was out of office last week. Tuesday works.",
        "I'm out of the office until Monday, but yes, let's talk on Tuesday at 2pm.",
        "I'm traveling until Friday. What does pricing look like for 40 people?",
        "We are not interested, and I am on vacation until Monday anyway.",
        "Quick reply:\n" + "We looked at your deck and liked it. " * 20 + "\nI am out of office.",
    ],
)
def test_person_reply_is_not_auto_reply(body: str) -> None:
    assert _detect("Subject: Re: Quick question", body) is None


def test_urgent_contact_line_is_canned_not_interest() -> None:
    body = "I am out of the office until Monday. For urgent matters call me on +46 70 123 45 67."
    found = _detect("Subject: Quick question", body)
    assert found is not None
    assert found.return_date == DEC(14)


def test_absence_in_quoted_history_does_not_count() -> None:
    body = (
        "Sure, Thursday at 10am works.\n\n"
        "On Mon, Dec 7, 2026 at 9:02 AM Ann <ann@example.org> wrote:\n"
        "> I am out of the office until 14 December with limited access to email.\n"
    )
    assert _detect("Subject: Re: Quick question", body) is None


def test_return_date_reason_is_given() -> None:
    found = _detect("Subject: Automatic reply: Hi", "I am out of the office until 14 December.")
    assert found is not None
    assert found.return_date == DEC(14)
    assert "back on 2026-12-14: text says 'until 14 December.'" in found.why


def test_return_date_from_subject_when_body_has_none() -> None:
    found = _detect("Subject: Away until 14 December\nAuto-Submitted: auto-replied", "Hi.")
    assert found is not None
    assert found.return_date == DEC(14)


def test_apple_vacation_end_date() -> None:
    header = (
        "Subject: Auto reply: Hi\nX-Apple-Action: VACATION\nX-Apple-Criteria: "
        "{kind=VACATION,startDate=2026-11-30T23:00:00Z,endDate=2026-12-13T22:59:59Z}"
    )
    found = _detect(header, "I'm only sleeping.")
    assert found is not None
    assert found.return_date == DEC(14)


# --- fixtures and corpus -----------------------------------------------------------------

_EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(_EXPECTED))
def test_autoreply_fixture(name: str) -> None:
    expected = _EXPECTED[name]
    found = classify_bytes((FIXTURES / name).read_bytes(), NOW)
    assert found.kind == Kind(expected["kind"]), found.why
    returned = found.return_date.isoformat() if found.return_date else None
    assert returned == expected["return_date"], found.why


def _corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path.read_bytes()


@pytest.mark.parametrize("name", ["rfc3834-01.eml", "rfc3834-03.eml", "rfc3834-05.eml"])
def test_corpus_auto_replies(name: str) -> None:
    found = classify_bytes(_corpus(name), NOW)
    assert found.kind == Kind.AUTO_REPLY, found.why


def test_corpus_return_date_is_read_relative_to_the_date_header() -> None:
    # "Date: Thu, 29 Apr 2005", "returning to the office on May 5th": back on 5 May 2005
    found = classify_bytes(_corpus("rfc3834-01.eml"), NOW)
    assert found.return_date == date(2005, 5, 5)


def test_corpus_apple_vacation_return_date() -> None:
    # X-Apple-Criteria: endDate=2020-01-10T14:59:59Z, the end of 10 January in Japan
    found = classify_bytes(_corpus("rfc3834-03.eml"), NOW)
    assert found.return_date == date(2020, 1, 11)


@pytest.mark.parametrize("name", ["not-is-not-bounce-01.eml", "not-is-not-bounce-02.eml"])
def test_corpus_ordinary_mail_is_not_a_bounce(name: str) -> None:
    found = classify_bytes(_corpus(name), NOW)
    assert found.kind not in (Kind.BOUNCE, Kind.COMPLAINT, Kind.AUTO_REPLY), found.why
