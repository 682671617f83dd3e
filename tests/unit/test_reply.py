"""A person's reply: new text without quoted history and signature, and its intent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach.inbound import reply
from outreach.inbound.classify import classify_bytes
from outreach.inbound.types import Intent, Kind

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPLIES = FIXTURES / "replies"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OURS = (
    "Hi Ann,\n\nWould you be open to a 15-minute call next week?\n\nSam\n\n--\n"
    "Brightpath, 12 Example Street, Springfield\n"
    "If you'd rather not hear from me, reply 'unsubscribe' to stop.\n"
    "Unsubscribe: https://go.brightpath.example.com/u/Zm9vYmFyLTQyLTE.q8sKd2"
)


def quoted(text: str = OURS) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.split("\n"))


# --- fixtures ----------------------------------------------------------------------------

_EXPECTED = json.loads((REPLIES / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(_EXPECTED))
def test_reply_fixture(name: str) -> None:
    expected = _EXPECTED[name]
    found = classify_bytes((REPLIES / name).read_bytes(), NOW)
    assert found.kind == Kind(expected["kind"]), found.why
    assert found.intent == Intent(expected["intent"]), found.why
    if "text" in expected:
        assert found.text == expected["text"]
    else:
        assert (found.text or "").startswith(expected["text_startswith"]), found.text


def test_fixtures_say_why() -> None:
    found = classify_bytes((REPLIES / "iphone-en-remove-me.eml").read_bytes(), NOW)
    assert found.why == [
        "quoted history and signature removed: 15 lines",
        "new text says 'remove me'",
    ]


# --- new text ----------------------------------------------------------------------------

GMAIL_WRAPPED = (
    "Sounds good.\n\nOn Mon, Dec 7, 2026 at 9:02 AM Sam Seller <sam@brightpath.example.com>\n"
    f"wrote:\n\n{quoted()}\n"
)
ATTRIBUTIONS = [
    "On Mon, Dec 7, 2026 at 9:02 AM Sam Seller <sam@brightpath.example.com> wrote:",
    "Am Mo., 7. Dez. 2026 um 09:02 Uhr schrieb Sam Seller <sam@brightpath.example.com>:",
    "Le lun. 7 déc. 2026 à 09:02, Sam Seller <sam@brightpath.example.com> a écrit :",
    "El lun, 7 dic 2026 a las 9:02, Sam Seller (<sam@brightpath.example.com>) escribió:",
    "Den mån 7 dec. 2026 kl 09:02 skrev Sam Seller <sam@brightpath.example.com>:",
    "On 7 Dec 2026, at 09:02, Sam Seller <sam@brightpath.example.com> wrote:",
    "On 12/7/26 9:02 AM, Sam Seller wrote:",
    "Am 07.12.2026 um 09:02 schrieb Sam Seller:",
    "7 dec. 2026 kl. 09:02 skrev Sam Seller <sam@brightpath.example.com>:",
]


@pytest.mark.parametrize("attribution", ATTRIBUTIONS)
def test_attribution_and_quote_are_cut(attribution: str) -> None:
    answer = reply.read_reply(f"Sounds good.\n\n{attribution}\n\n{quoted()}\n", "Re: Hi")
    assert answer.text == "Sounds good."


@pytest.mark.parametrize("attribution", ATTRIBUTIONS)
def test_attribution_followed_by_unquoted_history_is_cut(attribution: str) -> None:
    # HTML mail turned into text loses its ">" marks
    answer = reply.read_reply(f"Sounds good.\n\n{attribution}\n\n{OURS}\n", "Re: Hi")
    assert answer.text == "Sounds good."
    assert answer.intent == Intent.INTERESTED


def test_wrapped_gmail_attribution() -> None:
    assert reply.read_reply(GMAIL_WRAPPED, "Re: Hi").text == "Sounds good."


@pytest.mark.parametrize(
    "header_block",
    [
        "From: Sam Seller <sam@brightpath.example.com>\nSent: Monday, December 7, 2026 9:02 AM\n"
        "To: Ann <ann@example.org>\nSubject: Hi",
        "-----Original Message-----\nFrom: Sam Seller [mailto:sam@brightpath.example.com]\n"
        "Sent: Monday, December 07, 2026 9:02 AM\nTo: Ann\nSubject: Hi",
        "________________________________\nVon: Sam Seller <sam@brightpath.example.com>\n"
        "Gesendet: Montag, 7. Dezember 2026 09:02\nAn: Ann <ann@example.org>\nBetreff: Hi",
        "________________________________\nDe : Sam Seller <sam@brightpath.example.com>\n"
        "Envoyé : lundi 7 décembre 2026 09:02\nÀ : Ann <ann@example.org>\nObjet : Hi",
        "De: Sam Seller <sam@brightpath.example.com>\n"
        "Enviado el: lunes, 7 de diciembre de 2026 9:02\nPara: Ann <ann@example.org>\nAsunto: Hi",
        "Från: Sam Seller <sam@brightpath.example.com>\nSkickat: den 7 december 2026 09:02\n"
        "Till: Ann <ann@example.org>\nÄmne: Hi",
        "From: Sam Seller <sam@brightpath.example.com>\n\n"
        "Date: Monday, 7 December 2026 at 09:02\n\nTo: Ann <ann@example.org>\n\nSubject: Hi",
    ],
)
def test_outlook_header_blocks_are_cut(header_block: str) -> None:
    text = f"No thanks, we are all set.\n\n{header_block}\n\n{OURS}\n"
    answer = reply.read_reply(text, "RE: Hi")
    assert answer.text == "No thanks, we are all set."
    assert answer.intent == Intent.NOT_INTERESTED


@pytest.mark.parametrize(
    "marker",
    [
        "---------- Forwarded message ---------",
        "-------- Weitergeleitete Nachricht --------",
        "-------- Message transféré --------",
        "---------- Mensaje reenviado ---------",
        "Begin forwarded message:",
        "Début du message réexpédié :",
        "Vidarebefordrat brev:",
    ],
)
def test_forward_keeps_the_note_above(marker: str) -> None:
    text = (
        f"Jane, this might help your team.\n\n{marker}\n"
        f"From: Sam Seller <sam@brightpath.example.com>\nSubject: Hi\n\n{OURS}\n"
    )
    assert reply.read_reply(text, "Fwd: Hi").text == "Jane, this might help your team."


def test_inline_answers_are_kept() -> None:
    text = (
        "On Mon, Dec 7, 2026 at 9:02 AM Sam Seller <sam@brightpath.example.com> wrote:\n"
        "> Are you hiring?\n\nYes, five people.\n\n> Open to a call?\n\nSure, Tuesday.\n"
        "> Sam\n"
    )
    assert reply.read_reply(text, "Re: Hi").text == "Yes, five people.\n\nSure, Tuesday."


def test_plain_quote_without_attribution() -> None:
    text = f"Not a fit for us, sorry.\n\n{quoted()}\n"
    answer = reply.read_reply(text, "Re: Hi")
    assert answer.text == "Not a fit for us, sorry."
    assert answer.intent == Intent.NOT_INTERESTED


@pytest.mark.parametrize(
    "footer",
    [
        "-- \nAnn Rep\nVP People",
        "--\nAnn Rep | Acme",
        "Sent from my iPhone",
        "Sent from my Galaxy",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Skickat från min iPhone",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Enviado desde mi iPhone",
        "Best,\nAnn",
        "Best regards,\nAnn Rep\nHead of People | Acme Inc.\n+1 555 0100\nwww.acme.example",
        "Thanks,\nAnn",
        "Cheers, Ann",
        "Mit freundlichen Grüßen\nAnna Beispiel\nLeiterin Personal",
        "Viele Grüße\nAnna",
        "Cordialement,\nClaire Exemple",
        "Bien à vous,\nClaire",
        "Saludos,\nLucía",
        "Un saludo,\nLucía Ejemplo\nResponsable de RR. HH.",
        "Med vänliga hälsningar\nErik Exempel\n070-123 45 67",
        "Mvh\nErik",
        "/Erik",
        "Ann Rep\nVP People, Acme\n+1 555 0100",
        "Ann",
    ],
)
def test_signatures_are_cut(footer: str) -> None:
    text = f"Happy to chat next week.\n\n{footer}\n\n{quoted()}\n"
    answer = reply.read_reply(text, "Re: Hi")
    assert answer.text == "Happy to chat next week."


@pytest.mark.parametrize("text", ["Thanks!", "Thanks,\nAnn", "Yes", "Ja, gerne"])
def test_a_short_message_is_not_taken_for_a_signature(text: str) -> None:
    assert reply.read_reply(text, "Re: Hi").text.split("\n")[0] == text.split("\n")[0]


def test_text_with_paragraphs_and_a_ps_is_kept() -> None:
    text = (
        "Thanks for the note.\n\nWe use a spreadsheet today.\n\nBest,\nAnn\n\n"
        "P.S. Our new office opens in March, which is when we would look at tools again."
    )
    assert reply.read_reply(text, "Re: Hi").text == text


def test_why_counts_removed_lines() -> None:
    answer = reply.read_reply(f"Sounds good.\n\nBest,\nAnn\n\n{quoted()}\n", "Re: Hi")
    removed = 2 + len(OURS.split("\n"))  # the sign-off block and every quoted line
    assert answer.why[0] == f"quoted history and signature removed: {removed} lines"


# --- intent ------------------------------------------------------------------------------

INTENTS = [
    # interested
    ("Sounds good, let's talk.", Intent.INTERESTED),
    ("Send me some times for next week.", Intent.INTERESTED),
    ("Can we schedule a call?", Intent.INTERESTED),
    ("I'm interested.", Intent.INTERESTED),
    ("Happy to book a meeting.", Intent.INTERESTED),
    ("How about Tuesday at 2pm?", Intent.INTERESTED),
    ("Yes", Intent.INTERESTED),
    ("Gerne, rufen Sie mich an.", Intent.INTERESTED),
    ("Ja, lass uns sprechen.", Intent.INTERESTED),
    ("Klingt interessant, wann passt es Ihnen?", Intent.INTERESTED),
    ("Intéressé, on peut en parler jeudi.", Intent.INTERESTED),
    ("Volontiers !", Intent.INTERESTED),
    ("Me interesa, ¿hablamos el jueves?", Intent.INTERESTED),
    ("Sí, hablemos.", Intent.INTERESTED),
    ("Låter intressant!", Intent.INTERESTED),
    ("Gärna, vi kan ta ett samtal på tisdag.", Intent.INTERESTED),
    ("Can you call me tomorrow?", Intent.INTERESTED),
    ("Bitte rufen Sie mich morgen an.", Intent.INTERESTED),
    # not interested
    ("Not interested.", Intent.NOT_INTERESTED),
    ("No thanks.", Intent.NOT_INTERESTED),
    ("We already use Workday.", Intent.NOT_INTERESTED),
    ("Not a fit for us.", Intent.NOT_INTERESTED),
    ("Kein Interesse.", Intent.NOT_INTERESTED),
    ("Nein danke.", Intent.NOT_INTERESTED),
    ("Pas intéressé, merci.", Intent.NOT_INTERESTED),
    ("Non merci.", Intent.NOT_INTERESTED),
    ("No me interesa.", Intent.NOT_INTERESTED),
    ("No, gracias.", Intent.NOT_INTERESTED),
    ("Inte intresserad.", Intent.NOT_INTERESTED),
    ("Nej tack.", Intent.NOT_INTERESTED),
    ("Not now, maybe next quarter.", Intent.NOT_INTERESTED),
    ("Vi kör redan Teamtailor.", Intent.NOT_INTERESTED),
    # referral
    ("You should talk to Jane (jane@example.org).", Intent.REFERRAL),
    ("I'm not the right person, please contact Jane Doe.", Intent.REFERRAL),
    ("I've cc'd my colleague who runs onboarding.", Intent.REFERRAL),
    ("Bitte wenden Sie sich an Frau Müller.", Intent.REFERRAL),
    ("Contactez plutôt notre DRH, Mme Martin.", Intent.REFERRAL),
    ("Habla con Pedro, él lleva el tema.", Intent.REFERRAL),
    ("Prata med Karin, hon ansvarar för det.", Intent.REFERRAL),
    ("I'll forward this to our CTO.", Intent.REFERRAL),
    ("Ich leite das an meinen Kollegen weiter.", Intent.REFERRAL),
    ("Merci, je transmets à mon collègue.", Intent.REFERRAL),
    # unsubscribe
    ("Unsubscribe", Intent.UNSUBSCRIBE),
    ("Please remove me from your list.", Intent.UNSUBSCRIBE),
    ("Take me off your list.", Intent.UNSUBSCRIBE),
    ("Stop emailing me.", Intent.UNSUBSCRIBE),
    ("STOP", Intent.UNSUBSCRIBE),
    ("stop.", Intent.UNSUBSCRIBE),
    ("Bitte abmelden.", Intent.UNSUBSCRIBE),
    ("Bitte tragen Sie mich aus Ihrem Verteiler aus.", Intent.UNSUBSCRIBE),
    ("Merci de me désinscrire.", Intent.UNSUBSCRIBE),
    ("Quiero darme de baja.", Intent.UNSUBSCRIBE),
    ("Avregistrera mig, tack.", Intent.UNSUBSCRIBE),
    ("Sluta maila mig.", Intent.UNSUBSCRIBE),
    ("Stoppen Sie bitte die E-Mails.", Intent.UNSUBSCRIBE),
    # neutral
    ("Thanks!", Intent.NEUTRAL),
    ("What does pricing look like?", Intent.NEUTRAL),
    ("Who else uses this?", Intent.NEUTRAL),
    ("Danke für die Info.", Intent.NEUTRAL),
    ("Stop by our booth at the fair if you are around.", Intent.NEUTRAL),
    # precedence and negation
    ("Not interested myself, but talk to Jane, she handles this.", Intent.REFERRAL),
    ("Not interested. Please remove me.", Intent.UNSUBSCRIBE),
    ("I'm not interested right now.", Intent.NOT_INTERESTED),
    ("Not sure it sounds good for us yet.", Intent.NEUTRAL),
    ("Ich bin nicht interessiert.", Intent.NOT_INTERESTED),
    ("Je ne suis pas intéressé.", Intent.NOT_INTERESTED),
    ("No problem, sounds good!", Intent.INTERESTED),
    ("Can't talk now but happy to chat next week.", Intent.INTERESTED),
]


@pytest.mark.parametrize(("text", "intent"), INTENTS)
def test_intent(text: str, intent: Intent) -> None:
    assert reply.read_reply(text, "Re: Hi").intent == intent


def test_quoted_footer_is_not_an_unsubscribe() -> None:
    text = (
        "Thanks, can you send a one-pager first?\n\n"
        f"On Mon, Dec 7, 2026 at 9:02 AM Sam Seller <sam@brightpath.example.com> wrote:\n\n"
        f"{quoted()}\n"
    )
    answer = reply.read_reply(text, "Re: Hi")
    assert answer.intent == Intent.NEUTRAL
    assert "unsubscribe" not in answer.text.lower()


def test_unquoted_footer_lines_are_ignored_for_intent() -> None:
    # a client that pasted our footer into the reply without any quote marks
    text = f"Thanks, can you send a one-pager first?\n\n{OURS}\n"
    assert reply.read_reply(text, "Re: Hi").intent == Intent.NEUTRAL


def test_unsubscribe_in_own_subject_with_empty_body() -> None:
    assert reply.read_reply("", "Unsubscribe").intent == Intent.UNSUBSCRIBE
    assert reply.read_reply("", "Re: Stop losing new hires").intent == Intent.NEUTRAL


def test_intent_reason_names_the_phrase() -> None:
    assert reply.read_reply("We already use Workday.", "Re: Hi").why == [
        "new text says 'We already use'"
    ]
