"""Bounce reports, delivery reports and complaints read from small hand-written messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.inbound import bounce, mime
from outreach.inbound.classify import classify_bytes
from outreach.inbound.types import BounceReport

SENT_ID = "<step1.enr42@acme.example>"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def message(text: str) -> bytes:
    """Raw bytes from a readable message: leading indentation kept, lines joined by CRLF."""
    return "\r\n".join(text.strip("\n").split("\n")).encode()


def dsn(
    status: str, diagnostic: str, action: str = "failed", rcpt: str = "bob@example.com"
) -> bytes:
    return message(
        f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: ann@acme.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <report1@mx.example.net>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.net.

<{rcpt}>: host mx.example.com[192.0.2.1] said: {diagnostic}

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--B
Content-Type: message/rfc822

From: Ann Rep <ann@acme.example>
To: Bob <{rcpt}>
Subject: Quick question
Message-ID: {SENT_ID}

Hi Bob
--B--
"""
    )


def read(raw: bytes) -> BounceReport:
    found = bounce.read_bounce(mime.parse(raw))
    assert found is not None
    return found


def nothing(raw: bytes) -> None:
    msg = mime.parse(raw)
    assert bounce.read_complaint(msg) is None
    assert bounce.read_bounce(msg) is None
    assert bounce.is_delivery_report(msg) is False


def test_rfc3464_user_unknown_is_hard_with_the_original_message_id() -> None:
    raw = dsn("5.1.1", "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown")
    msg = mime.parse(raw)
    assert bounce.read_complaint(msg) is None
    found = bounce.read_bounce(msg)
    assert found is not None
    [rcpt] = found.recipients
    assert (rcpt.address, rcpt.status, rcpt.reason, rcpt.hard) == (
        "bob@example.com",
        "5.1.1",
        "userunknown",
        True,
    )
    assert found.hard is True
    assert found.original_message_id == "step1.enr42@acme.example"
    assert "multipart/report; report-type=delivery-status" in found.why
    assert "Action: failed" in found.why
    assert rcpt.diagnostic and "User unknown" in rcpt.diagnostic
    assert bounce.is_delivery_report(msg) is False


@pytest.mark.parametrize(
    ("status", "diagnostic", "action"),
    [
        ("4.2.2", "452 4.2.2 <bob@example.com>: Mailbox full", "delayed"),
        ("5.2.2", "552 5.2.2 Quota exceeded: the mailbox is full", "failed"),
    ],
)
def test_a_full_mailbox_is_soft(status: str, diagnostic: str, action: str) -> None:
    found = read(dsn(status, diagnostic, action))
    [rcpt] = found.recipients
    assert (rcpt.status, rcpt.reason, rcpt.hard, found.hard) == (
        status,
        "mailboxfull",
        False,
        False,
    )


def test_the_text_beats_the_status_code() -> None:
    found = read(dsn("5.1.1", "550 5.1.1 <bob@example.com>: mailbox is full, over quota"))
    assert found.recipients[0].reason == "mailboxfull"
    assert found.hard is False


def test_user_unknown_after_data_is_a_filter_and_after_mail_from_the_sender() -> None:
    after_data = read(
        dsn("5.0.0", "550 Unknown user bob@example.com (in reply to end of DATA command)")
    )
    assert (after_data.recipients[0].reason, after_data.hard) == ("filtered", False)
    sender = read(
        dsn("5.1.8", "553 5.1.8 <ann@acme.example>: Sender address rejected: Domain not found")
    )
    assert (sender.recipients[0].reason, sender.hard) == ("rejected", False)


POSTFIX_TEXT = message(
    """Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: ann@acme.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <report2@mx.example.net>
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<bob@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1
    <bob@example.com>: Recipient address rejected: User unknown in local
    recipient table (in reply to RCPT TO command)

--- Below this line is a copy of the message.

Return-Path: <ann@acme.example>
From: Ann Rep <ann@acme.example>
To: bob@example.com
Subject: Quick question
Message-ID: <step1.enr42@acme.example>

Hi Bob
"""
)


def test_postfix_plain_text_bounce() -> None:
    found = read(POSTFIX_TEXT)
    [rcpt] = found.recipients
    assert (rcpt.address, rcpt.status, rcpt.reason, rcpt.hard) == (
        "bob@example.com",
        "5.1.1",
        "userunknown",
        True,
    )
    assert found.original_message_id == "step1.enr42@acme.example"
    assert any("mail system" in reason for reason in found.why)
    assert any("Undelivered Mail Returned to Sender" in reason for reason in found.why)


EXCHANGE_2003 = message(
    """From: System Administrator <postmaster@example.com>
To: ann@acme.example
Subject: Undeliverable: Quick question
Message-ID: <report3@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="X"

--X
Content-Type: text/plain

Your message

  To:      Bob
  Subject: Quick question
  Sent:    Mon, 2 Mar 2026 09:00:00 +0000

did not reach the following recipient(s):

bob@example.com on Mon, 2 Mar 2026 09:00:05 +0000
    The e-mail account does not exist at the organization this message was sent to.
    <mx.example.com #5.1.1>

--X
Content-Type: message/rfc822

From: Ann Rep <ann@acme.example>
To: bob@example.com
Subject: Quick question
Message-ID: <step1.enr42@acme.example>

Hi Bob
--X--
"""
)

OFFICE_365 = message(
    """From: Microsoft Outlook <postmaster@example.onmicrosoft.com>
To: ann@acme.example
Subject: Undeliverable: Quick question
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Delivery has failed to these recipients or groups:

bob@example.com<mailto:bob@example.com>
The email address you entered couldn't be found.

Diagnostic information for administrators:

Generating server: AM0PR01MB0001.eurprd01.prod.outlook.com

bob@example.com
Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found'

Original message headers:

Message-ID: <step1.enr42@acme.example>
Subject: Quick question
"""
)


@pytest.mark.parametrize("raw", [EXCHANGE_2003, OFFICE_365], ids=["exchange2003", "office365"])
def test_exchange_reports(raw: bytes) -> None:
    found = read(raw)
    [rcpt] = found.recipients
    assert (rcpt.address, rcpt.reason, rcpt.hard) == ("bob@example.com", "userunknown", True)
    assert rcpt.status in ("5.1.1", "5.1.10")
    assert found.original_message_id == "step1.enr42@acme.example"


def test_several_recipients_the_report_is_hard_when_one_is() -> None:
    raw = message(
        """From: MAILER-DAEMON@mx.example.net
To: ann@acme.example
Subject: failure notice

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<full@example.com>:
192.0.2.1 does not like recipient.
Remote host said: 552 5.2.2 <full@example.com>: Mailbox full

<gone@example.com>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <gone@example.com>: User unknown

--- Below this line is a copy of the message.

Message-ID: <step1.enr42@acme.example>
"""
    )
    found = read(raw)
    reasons = {r.address: (r.reason, r.hard) for r in found.recipients}
    assert reasons == {
        "full@example.com": ("mailboxfull", False),
        "gone@example.com": ("userunknown", True),
    }
    assert found.hard is True
    assert found.original_message_id == "step1.enr42@acme.example"


ARF = message(
    """From: feedback@isp.example
To: abuse@acme.example
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B"

--B
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.7.

--B
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: <bob@example.com>
Source-IP: 192.0.2.7

--B
Content-Type: message/rfc822

From: Ann Rep <ann@acme.example>
To: Robert <robert@example.com>
Subject: Quick question
Message-ID: <step1.enr42@acme.example>

Hi Bob
--B--
"""
)


def test_arf_complaint() -> None:
    msg = mime.parse(ARF)
    found = bounce.read_complaint(msg)
    assert found is not None
    assert found.feedback_type == "abuse"
    assert found.original_recipient == "bob@example.com"
    assert found.original_message_id == "step1.enr42@acme.example"
    assert "Feedback-Type: abuse" in found.why
    assert str(classify_bytes(ARF, NOW).kind) == "complaint"


def test_arf_without_original_rcpt_to_uses_the_attached_to() -> None:
    raw = ARF.replace(b"Original-Rcpt-To: <bob@example.com>\r\n", b"")
    found = bounce.read_complaint(mime.parse(raw))
    assert found is not None
    assert found.original_recipient == "robert@example.com"


def test_delivered_report_is_a_delivery_report_not_a_bounce() -> None:
    raw = dsn("2.0.0", "250 2.0.0 Ok: queued as 12345", action="delivered")
    msg = mime.parse(raw)
    assert bounce.read_bounce(msg) is None
    assert bounce.read_complaint(msg) is None
    assert bounce.is_delivery_report(msg) is True
    assert str(classify_bytes(raw, NOW).kind) == "delivery_report"


def test_a_report_with_one_delivered_and_one_failed_recipient_is_a_bounce() -> None:
    raw = dsn("5.1.1", "550 5.1.1 User unknown").replace(
        b"Reporting-MTA: dns; mx.example.net\r\n",
        b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
        b"Final-Recipient: rfc822; carol@example.com\r\nAction: relayed\r\nStatus: 2.0.0\r\n",
    )
    found = read(raw)
    assert [r.address for r in found.recipients] == ["bob@example.com"]
    assert bounce.is_delivery_report(mime.parse(raw)) is False


HUMAN_REPLY = message(
    """From: Bob <bob@example.com>
To: Ann Rep <ann@acme.example>
Subject: Re: Quick question
Message-ID: <reply1@example.com>
In-Reply-To: <step1.enr42@acme.example>
Content-Type: text/plain; charset=utf-8

Sounds good, let's talk on Thursday.

On Mon, 2 Mar 2026 at 09:00, Ann Rep wrote:
> Hi Bob, got a minute?
"""
)


def test_a_human_reply_is_nothing() -> None:
    nothing(HUMAN_REPLY)


def test_a_vacation_reply_is_not_a_bounce() -> None:
    raw = message(
        """Return-Path: <>
From: Bob <bob@example.com>
To: ann@acme.example
Subject: Out of Office: Quick question
Auto-Submitted: auto-replied
In-Reply-To: <step1.enr42@acme.example>
Content-Type: text/plain

I am out of the office until 16 March with no access to email.
Your message was not delivered to my phone; I will read it when I am back.
"""
    )
    nothing(raw)


QUOTED_BOUNCE_REPLY = message(
    """From: Bob <bob@example.com>
To: ann@acme.example
Subject: Re: Delivery Status Notification (Failure)
In-Reply-To: <report9@mx.example.net>
Content-Type: text/plain

I got this Delivery Status Notification when I wrote to Carol - is her address
undeliverable now? The message could not be delivered, it said.

> Delivery to the following recipient failed permanently:
>      carol@example.com
> 550 5.1.1 User unknown
"""
)

WORDS_IN_A_NEW_MESSAGE = message(
    """From: Bob <bob@example.com>
To: ann@acme.example
Subject: About your email
Content-Type: text/plain

Your first email was undeliverable to my colleague, I got a Delivery Status
Notification saying the user unknown. Could you resend it to carol@example.org?
"""
)


@pytest.mark.parametrize(
    "raw", [QUOTED_BOUNCE_REPLY, WORDS_IN_A_NEW_MESSAGE], ids=["quoted", "mentioned"]
)
def test_a_person_writing_about_a_bounce_is_not_one(raw: bytes) -> None:
    nothing(raw)
    assert str(classify_bytes(raw, NOW).kind) not in ("bounce", "complaint")


def test_a_forwarded_bounce_attachment_is_not_ours() -> None:
    raw = (
        message(
            """From: Bob <bob@example.com>
To: ann@acme.example
Subject: Fwd: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="F"

--F
Content-Type: text/plain

See below, any idea?

--F
Content-Type: message/rfc822

"""
        )
        + dsn("5.1.1", "550 5.1.1 User unknown")
        + b"\r\n--F--\r\n"
    )
    assert bounce.read_bounce(mime.parse(raw)) is None


SES_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bouncedRecipients": [
            {
                "emailAddress": "Bob@Example.com",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
    },
    "mail": {
        "messageId": "0101abc-000000",
        "headers": [{"name": "Message-ID", "value": "<step1.enr42@acme.example>"}],
    },
}


def ses(notification: dict[str, object]) -> bytes:
    return (
        message(
            """From: SES <no-reply@sns.amazonaws.com>
To: ann@acme.example
Subject: AWS Notification Message
Content-Type: text/plain; charset=UTF-8
"""
        )
        + b"\r\n\r\n"
        + json.dumps(notification).encode()
    )


def test_amazon_ses_json_notifications() -> None:
    found = read(ses(SES_BOUNCE))
    [rcpt] = found.recipients
    assert (rcpt.address, rcpt.status, rcpt.reason, rcpt.hard) == (
        "bob@example.com",
        "5.1.1",
        "userunknown",
        True,
    )
    assert found.original_message_id == "step1.enr42@acme.example"
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "bob@example.com"}],
            "complaintFeedbackType": "abuse",
        },
        "mail": SES_BOUNCE["mail"],
    }
    found_complaint = bounce.read_complaint(mime.parse(ses(complaint)))
    assert found_complaint is not None
    assert found_complaint.original_recipient == "bob@example.com"
    delivered = mime.parse(ses({"notificationType": "Delivery", "mail": {}}))
    assert bounce.read_bounce(delivered) is None
    assert bounce.is_delivery_report(delivered) is True


def test_calls_on_different_messages_do_not_mix_up() -> None:
    hard = mime.parse(dsn("5.1.1", "550 5.1.1 User unknown"))
    reply = mime.parse(HUMAN_REPLY)
    for _ in range(2):
        assert bounce.read_bounce(reply) is None
        found = bounce.read_bounce(hard)
        assert found is not None and found.hard is True


SAMPLES = [
    dsn("5.1.1", "550 5.1.1 User unknown"),
    POSTFIX_TEXT,
    EXCHANGE_2003,
    OFFICE_365,
    ARF,
    ses(SES_BOUNCE),
    HUMAN_REPLY,
]


def read_all(raw: bytes) -> None:
    msg = mime.parse(raw)
    bounce.read_complaint(msg)
    report = bounce.read_bounce(msg)
    bounce.is_delivery_report(msg)
    if report is not None:
        json.dumps(report.to_json())
    json.dumps(classify_bytes(raw, NOW).to_json())


@pytest.mark.parametrize("sample", range(len(SAMPLES)))
def test_truncated_reports_do_not_raise(sample: int) -> None:
    raw = SAMPLES[sample]
    for end in range(0, len(raw), 7):
        read_all(raw[:end])


def test_garbled_reports_do_not_raise() -> None:
    garbled = [
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=\r\n\r\n--",
        b"Content-Type: message/delivery-status\r\n\r\nAction:\r\nStatus: x.y\r\nFinal-Recipient:",
        b"From: MAILER-DAEMON\r\nSubject: failure notice\r\n\r\n<@>:\r\n<a@b>: \xff\xfe 550",
        b"From: no-reply@sns.amazonaws.com\r\n\r\n"
        + b'{"notificationType": "Bounce", "bounce": 3}',
        b"From: no-reply@sns.amazonaws.com\r\n\r\n" + b"[" * 5000 + b'{"Message": "{\\"x\\": 1}"}',
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: message/feedback-report\r\n\r\n\r\n--B--",
        b"Subject: =?utf-8?B?not base64?=\r\nFrom: =?x-unknown?Q?postmaster?=\r\n\r\nundeliverable",
    ]
    for raw in garbled:
        read_all(raw)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(SAMPLES))
def test_random_bytes_spliced_into_reports_do_not_raise(noise: bytes, sample: bytes) -> None:
    cut = len(noise) % (len(sample) + 1)
    read_all(sample[:cut] + noise + sample[cut:])
