"""One outgoing email and the RFC 5322 bytes it becomes."""

from __future__ import annotations

import binascii
import functools
import html as html_lib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses
from pathlib import Path
from urllib.parse import quote

import dkim as dkimpy

DKIM_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_MSG_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")
_URI = re.compile(r"[!-;=?-~]+")
_ADDR_SPEC = re.compile(r"[^\s<>()\[\],;:\\\"@]+@[A-Za-z0-9.-]+")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*")
# RFC 5322 atext minus "%", which quote() uses to escape everything else.
_ATEXT_SAFE = "!#$&'*+-/=?^_`{|}~"
_FOLD_AT = 78
# A folded header's first line also holds the field name; leave room for it.
_FOLD_WIDTH = _FOLD_AT - 20
_MAX_PLAIN = 900


@dataclass(frozen=True)
class OutgoingEmail:
    """Everything needed to write one message; rendering happened before."""

    message_id: str
    sender: str
    to_email: str
    to_name: str | None
    reply_to: str | None
    subject: str
    text: str
    html: str | None
    date: datetime
    unsubscribe_url: str
    unsubscribe_mailto: str
    postal_address: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


class DkimSigner:
    """Signs built messages with one RSA key (relaxed/relaxed, rsa-sha256)."""

    def __init__(self, selector: str, domain: str | None, private_key: bytes) -> None:
        self.selector = selector
        self.domain = domain
        self.private_key = private_key

    @classmethod
    def from_file(cls, path: str | Path, selector: str) -> DkimSigner:
        """Load a PEM private key; the signing domain is then each sender's domain."""
        return cls(selector, None, Path(path).read_bytes())

    def sign(self, data: bytes, domain: str) -> bytes:
        """Return data with a DKIM-Signature header prepended."""
        signature = dkimpy.sign(
            data,
            self.selector.encode("ascii"),
            (self.domain or domain).encode("ascii"),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[name.lower().encode("ascii") for name in DKIM_HEADERS],
        )
        return bytes(signature) + data


def make_message_id(key: str, domain: str) -> str:
    """Return a stable Message-ID: the same key and domain always give the same id."""
    if not key:
        raise ValueError("a Message-ID key may not be empty")
    local = quote(key, safe=_ATEXT_SAFE)
    if local.startswith(".") or local.endswith(".") or ".." in local:
        local = local.replace(".", "%2E")
    return f"<{local}@{_ascii_domain(domain)}>"


def sender_domain(sender: str) -> str:
    """Return the lower-cased domain of a "Name <addr>" sender."""
    return _parse_mailbox(sender)[1].rpartition("@")[2].lower()


def footer_text(email: OutgoingEmail) -> str:
    """Return the plain-text footer: postal address and unsubscribe link."""
    return f"\n\n--\n{email.postal_address}\nUnsubscribe: {email.unsubscribe_url}\n"


def footer_html(email: OutgoingEmail) -> str:
    """Return the HTML footer: a small paragraph with the address and a link."""
    address = "<br>".join(html_lib.escape(line) for line in email.postal_address.splitlines())
    url = html_lib.escape(email.unsubscribe_url, quote=True)
    return (
        '<p style="font-size:small;color:#666666">--<br>'
        f'{address}<br><a href="{url}">Unsubscribe</a></p>'
    )


def build_message(email: OutgoingEmail, dkim: DkimSigner | None = None) -> bytes:
    """Return the message as RFC 5322 bytes with CRLF line ends, ready for SMTP DATA."""
    # Rendered by hand from email.utils/email.header primitives: EmailMessage with
    # policy.SMTP re-parses every header on output and costs about three times more.
    headers = _headers(email)
    data = _serialize(headers, _body(email, headers))
    if dkim is not None:
        data = dkim.sign(data, sender_domain(email.sender))
    return data


def _headers(email: OutgoingEmail) -> list[tuple[str, str]]:
    headers = [
        ("Message-ID", _message_id(email.message_id)),
        ("Date", format_datetime(_aware(email.date))),
        ("From", _address(*_parse_mailbox(email.sender))),
        ("To", _address(email.to_name, email.to_email)),
    ]
    if email.reply_to:
        headers.append(("Reply-To", _address(*_parse_mailbox(email.reply_to))))
    headers += [
        ("Subject", _unstructured(email.subject)),
        ("MIME-Version", "1.0"),
        ("List-Unsubscribe", _list_unsubscribe(email)),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    if email.in_reply_to:
        headers.append(("In-Reply-To", _message_id(email.in_reply_to)))
    if email.references:
        headers.append(("References", _fold(_message_id(ref) for ref in email.references)))
    headers += [(_field_name(name), _unstructured(value)) for name, value in email.headers]
    return headers


def _body(email: OutgoingEmail, headers: list[tuple[str, str]]) -> str:
    """Append the content headers to headers and return the encoded body."""
    text = _normal_lines(email.text).rstrip("\n") + footer_text(email)
    if email.html is None:
        return _text_part(headers, "plain", text)
    html = _with_html_footer(_normal_lines(email.html), footer_html(email))
    # "=_" never occurs in quoted-printable output, and the token makes the rest unique.
    boundary = "=_" + secrets.token_hex(16)
    headers.append(("Content-Type", f'multipart/alternative;\n boundary="{boundary}"'))
    parts = [_part("plain", text), _part("html", html)]
    return "".join(f"--{boundary}\n{part}\n" for part in parts) + f"--{boundary}--\n"


def _part(subtype: str, body: str) -> str:
    headers: list[tuple[str, str]] = []
    payload = _text_part(headers, subtype, body)
    return "".join(f"{name}: {value}\n" for name, value in headers) + "\n" + payload


def _text_part(headers: list[tuple[str, str]], subtype: str, body: str) -> str:
    if body.isascii() and all(len(line) <= _FOLD_AT for line in body.split("\n")):
        cte, payload = "7bit", body
    else:
        cte = "quoted-printable"
        payload = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    headers.append(("Content-Type", f'text/{subtype}; charset="utf-8"'))
    headers.append(("Content-Transfer-Encoding", cte))
    return payload if payload.endswith("\n") else payload + "\n"


def _serialize(headers: list[tuple[str, str]], body: str) -> bytes:
    head = "".join(f"{name}: {value}\n" for name, value in headers)
    return (head + "\n" + body).replace("\n", "\r\n").encode("ascii")


def _field_name(name: str) -> str:
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"not a header field name: {name!r}")
    return name


def _one_line(value: str) -> str:
    """Collapse control characters and runs of space, so a value never starts a header."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _unstructured(value: str) -> str:
    value = _one_line(value)
    # "=?" would let the plain text be read as an RFC 2047 encoded word.
    if value.isascii() and "=?" not in value and len(value) < _MAX_PLAIN:
        return _fold(value.split(" "))
    return Header(value, "utf-8").encode()


@functools.lru_cache(maxsize=4096)
def _parse_mailbox(value: str) -> tuple[str, str]:
    """Parse exactly one "Name <addr>" or "addr"; parseaddr alone drops any rest silently."""
    found = getaddresses([value])
    if _CONTROL.search(value) or len(found) != 1 or not _ADDR_SPEC.fullmatch(found[0][1]):
        raise ValueError(f"not one email address: {value!r}")
    return found[0]


def _address(name: str | None, addr: str) -> str:
    addr = addr.strip()
    if not _ADDR_SPEC.fullmatch(addr):
        raise ValueError(f"not an email address: {addr!r}")
    name = _one_line(name or "")
    if not name:
        return addr
    if name.isascii() and "=?" not in name:
        return formataddr((name, addr))
    return f"{Header(name, 'utf-8').encode()} <{addr}>"


def _aware(date: datetime) -> datetime:
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date must be timezone-aware")
    return date


def _message_id(value: str) -> str:
    value = value.strip()
    if not _MSG_ID.fullmatch(value):
        raise ValueError(f"not a Message-ID: {value!r}")
    return value


def _uri(value: str, *schemes: str) -> str:
    if not (_URI.fullmatch(value) and value.lower().startswith(schemes)):
        raise ValueError(f"not a {' or '.join(schemes)} URI: {value!r}")
    return f"<{value}>"


def _list_unsubscribe(email: OutgoingEmail) -> str:
    # RFC 8058 one-click needs the https URI; receivers use the first they support.
    https = _uri(email.unsubscribe_url, "https://", "http://")
    mailto = _uri(email.unsubscribe_mailto, "mailto:")
    return _fold([https + ",", mailto])


def _fold(words: Iterable[str]) -> str:
    """Join words with spaces, breaking lines before they pass 78 characters."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + len(word) < _FOLD_WIDTH:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n ".join(lines)


def _normal_lines(body: str) -> str:
    return body.replace("\r\n", "\n").replace("\r", "\n")


def _with_html_footer(html: str, footer: str) -> str:
    at = html.lower().rfind("</body>")
    return html + "\n" + footer if at < 0 else html[:at] + footer + "\n" + html[at:]


def _ascii_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a domain: {domain!r}")
    return domain
