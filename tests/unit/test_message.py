"""The bytes build_message writes: headers per the SPEC, no injection, DKIM."""

from __future__ import annotations

import base64
import dataclasses
import email
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from outreach.message import (
    DkimSigner,
    OutgoingEmail,
    build_message,
    footer_text,
    make_message_id,
    sender_domain,
)

URL = "https://out.acme.example/u/" + "tok3n" * 20
MAILTO = "mailto:unsubscribe+" + "tok3n" * 8 + "@acme.example?subject=unsubscribe"


def outgoing(**changes: Any) -> OutgoingEmail:
    base = OutgoingEmail(
        message_id=make_message_id("enrollment-7.step-1", "acme.example"),
        sender="Ann Rep <ann@acme.example>",
        to_email="bob@example.com",
        to_name="Bob Buyer",
        reply_to=None,
        subject="Quick question",
        text="Hi Bob,\n\nGot a minute?\n",
        html=None,
        date=datetime(2024, 5, 2, 9, 30, tzinfo=timezone(timedelta(hours=2))),
        unsubscribe_url=URL,
        unsubscribe_mailto=MAILTO,
        postal_address="Acme Inc., 1 Main St, Springfield",
    )
    return dataclasses.replace(base, **changes)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str = "plain") -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert isinstance(part, EmailMessage)
    return str(part.get_content()).replace("\r\n", "\n")


def test_headers_the_spec_asks_for() -> None:
    data = build_message(outgoing())
    message = parse(data)
    assert message["Message-ID"] == "<enrollment-7.step-1@acme.example>"
    assert message["Date"].datetime == datetime(2024, 5, 2, 7, 30, tzinfo=UTC)
    assert message["From"].addresses[0].addr_spec == "ann@acme.example"
    assert message["From"].addresses[0].display_name == "Ann Rep"
    assert str(message["To"]) == "Bob Buyer <bob@example.com>"
    assert message["Subject"] == "Quick question"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == f"<{URL}>, <{MAILTO}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Reply-To" not in message and "In-Reply-To" not in message
    assert message.get_content_type() == "text/plain"
    assert not message.defects


def test_bytes_are_crlf_lines_within_limits() -> None:
    data = build_message(outgoing(html="<p>Hi</p>", text="é " * 200))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert data.isascii()
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_long_ids_and_urls_are_folded_not_encoded() -> None:
    refs = tuple(
        make_message_id(f"enrollment-{'9' * 40}.step-{n}", "acme.example") for n in range(4)
    )
    message = parse(build_message(outgoing(in_reply_to=refs[-1], references=refs)))
    assert message["In-Reply-To"] == refs[-1]
    assert message["References"].split() == list(refs)
    assert "=?" not in message["List-Unsubscribe"]


def test_message_id_is_stable_and_valid() -> None:
    assert make_message_id("e1.s2", "Acme.Example") == make_message_id("e1.s2", "acme.example")
    assert make_message_id("e1.s2", "acme.example") != make_message_id("e1.s3", "acme.example")
    odd = make_message_id("a b<c>@d..e", "acme.example")
    assert re.fullmatch(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@acme\.example>", odd)
    assert odd != make_message_id("a_b<c>@d..e", "acme.example")
    with pytest.raises(ValueError):
        make_message_id("", "acme.example")


def test_sender_domain() -> None:
    assert sender_domain("Ann Rep <ann@Acme.Example>") == "acme.example"
    with pytest.raises(ValueError):
        sender_domain("Ann Rep")


def test_reply_to_and_threading_headers() -> None:
    first = make_message_id("e1.s1", "acme.example")
    email_ = outgoing(
        reply_to="Ann <ann+replies@acme.example>",
        subject="Re: Quick question",
        in_reply_to=first,
        references=(first,),
        headers=(("X-Outreach-Enrollment", "e1"),),
    )
    message = parse(build_message(email_))
    assert message["Reply-To"].addresses[0].addr_spec == "ann+replies@acme.example"
    assert message["In-Reply-To"] == first
    assert message["References"] == first
    assert message["X-Outreach-Enrollment"] == "e1"


def test_no_rendered_value_can_add_or_split_a_header() -> None:
    evil = "Hi\n.\r\n.\r\nBcc: z@evil\r\n\r\nSubject: fake\n"
    email_ = outgoing(
        to_name="Eve\r\nBcc: x@evil",
        subject="Hi\r\nBcc: y@evil",
        text=evil,
        html="<p>Hi</p>\r\n.\r\nBcc: w@evil\r\nTo: v@evil",
        headers=(("X-Note", "a\r\nBcc: u@evil"),),
    )
    data = build_message(email_)
    message = parse(data)
    assert message.get_all("Bcc") is None
    assert len(message.get_all("To") or []) == 1
    assert len(message.get_all("Subject") or []) == 1
    assert message["To"].addresses[0].addr_spec == "bob@example.com"
    assert message["Subject"] == "Hi Bcc: y@evil"
    assert body(message).startswith("Hi\n.\n.\nBcc: z@evil\n\nSubject: fake\n")
    assert "Bcc: w@evil\nTo: v@evil" in body(message, "html")
    assert b"\r\n.\r\n" not in data


@pytest.mark.parametrize("field", ["to_email", "sender", "unsubscribe_url", "in_reply_to"])
def test_malformed_addresses_and_ids_are_refused(field: str) -> None:
    with pytest.raises(ValueError):
        build_message(outgoing(**{field: "x@evil>\r\nBcc: <y@evil"}))


def test_naive_date_is_refused() -> None:
    with pytest.raises(ValueError):
        build_message(outgoing(date=datetime(2024, 5, 2, 9, 30)))


def test_html_makes_multipart_alternative_with_footers() -> None:
    html = "<html><body><p>Hi <b>Bob</b></p></body></html>"
    message = parse(build_message(outgoing(html=html)))
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text, markup = body(message), body(message, "html")
    assert text.startswith("Hi Bob,\n\nGot a minute?\n\n--\nAcme Inc., 1 Main St, Springfield\n")
    assert text.endswith(f"Unsubscribe: {URL}\n")
    assert markup.index("Acme Inc.") < markup.index("</body>")
    assert f'<a href="{URL}">Unsubscribe</a>' in markup


def test_footer_text_shape() -> None:
    assert footer_text(outgoing()) == (
        f"\n\n--\nAcme Inc., 1 Main St, Springfield\nUnsubscribe: {URL}\n"
    )


def test_non_ascii_names_subject_and_body() -> None:
    email_ = outgoing(
        sender="Zoë Rep <zoe@acme.example>",
        to_name='Jürgen "JJ" Müller, PhD',
        subject="Grüße aus Köln — 日本語も",
        text="Schöne Grüße\n",
    )
    data = build_message(email_)
    assert data.isascii()
    message = parse(data)
    assert message["From"].addresses[0].display_name == "Zoë Rep"
    assert message["To"].addresses[0].display_name == 'Jürgen "JJ" Müller, PhD'
    assert message["To"].addresses[0].addr_spec == "bob@example.com"
    assert message["Subject"] == "Grüße aus Köln — 日本語も"
    assert body(message).startswith("Schöne Grüße\n")


def test_encoded_word_lookalikes_stay_literal() -> None:
    message = parse(build_message(outgoing(subject="=?utf-8?q?Fake?=", to_name="=?utf-8?q?X?=")))
    assert message["Subject"] == "=?utf-8?q?Fake?="
    assert message["To"].addresses[0].display_name == "=?utf-8?q?X?="


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dns_for(key: rsa.RSAPrivateKey) -> Any:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"s1._domainkey.acme.example." else None

    return dnsfunc


def test_dkim_signature_verifies_and_covers_unsubscribe(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    email_ = outgoing(html="<p>Hi</p>", to_name="Jürgen", in_reply_to="<a@acme.example>")
    data = build_message(email_, dkim=DkimSigner("s1", None, pem))
    assert data.startswith(b"DKIM-Signature:")
    assert dkim.verify(data, dnsfunc=dns_for(rsa_key))
    signature = parse(data)["DKIM-Signature"]
    tags = dict(
        tag.strip().split("=", 1) for tag in re.sub(r"\s+", "", signature).split(";") if tag
    )
    assert tags["d"] == "acme.example" and tags["c"] == "relaxed/relaxed"
    signed = tags["h"].lower().split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "message-id"} <= set(signed)
    tampered = data.replace(b"One-Click", b"One-Clack")
    assert not dkim.verify(tampered, dnsfunc=dns_for(rsa_key))


def test_dkim_signer_from_file(rsa_key: rsa.RSAPrivateKey, tmp_path: Any) -> None:
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    data = build_message(outgoing(), dkim=DkimSigner.from_file(path, "s1"))
    assert dkim.verify(data, dnsfunc=dns_for(rsa_key))
