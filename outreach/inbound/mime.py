"""Tolerant MIME reading: any bytes give a message; bad charsets and encodings never raise.

The stdlib parser runs with the fast `compat32` policy; headers are decoded here, on
demand, so a message costs little more than the parse itself.
"""

from __future__ import annotations

import email
import email.header
import html
import re
from collections.abc import Iterator
from email.message import Message
from email.utils import getaddresses

MAX_BODY_CHARS = 200_000  # the most body text any rule looks at
_MSGID_RE = re.compile(r"<([^<>\s]+)>")
_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.S | re.I)
_BLOCK_RE = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d|/blockquote|p|div|tr|li)\b[^>]*>", re.I)
_BLANKS_RE = re.compile(r"[ \t\r\f\v]+")
_CHARSET_ALIASES = {
    "unknown-8bit": "",  # raw 8-bit bytes: UTF-8 when they are, else Latin-1
    "x-unknown": "",
    "us-ascii": "ascii",
    "ansi_x3.4-1968": "ascii",
    "iso-2022-jp-ms": "iso2022_jp",
    "cp932": "cp932",
    "shift-jis": "shift_jis",
    "x-sjis": "shift_jis",
    "ks_c_5601-1987": "euc_kr",
    "gb2312": "gbk",
}


def parse(raw: bytes) -> Message:
    """A message from raw bytes; malformed input gives a message with defects, not an error."""
    return email.message_from_bytes(raw)


def header(msg: Message, name: str) -> str:
    """A header's decoded text with folding removed; "" when absent or unreadable."""
    value = msg.get(name)
    if value is None:
        return ""
    return decode_header(value)


def decode_header(value: object) -> str:
    """RFC 2047 encoded words decoded; anything undecodable kept as best as possible."""
    if isinstance(value, email.header.Header):
        # raw 8-bit bytes in a header come back as a Header: decode them ourselves
        chunks = email.header.decode_header(value)
        text = "".join(
            decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk
            for chunk, charset in chunks
        )
        return " ".join(text.split())
    text = str(value)
    if "=?" not in text:
        return " ".join(text.split())
    try:
        pieces = []
        for chunk, charset in email.header.decode_header(text):
            if isinstance(chunk, bytes):
                pieces.append(decode_bytes(chunk, charset))
            else:
                pieces.append(chunk)
        return " ".join("".join(pieces).split())
    except Exception:
        return " ".join(text.split())


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes to text in the declared charset, falling back to UTF-8 and then Latin-1."""
    name = (charset or "").strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    for candidate in (name, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeError, ValueError):  # odd codecs raise all of these
            continue
    return data.decode("latin-1")


def payload_text(part: Message) -> str:
    """A leaf part's content as text, transfer encoding and charset undone, never raising."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if data is None:
        try:
            raw = part.get_payload()
        except Exception:
            return ""
        return raw if isinstance(raw, str) else ""
    if not isinstance(data, bytes):
        return str(data)
    return decode_bytes(data[: MAX_BODY_CHARS * 4], part.get_content_charset())


def walk(msg: Message) -> Iterator[Message]:
    """Every part, depth first, including parts of attached messages."""
    try:
        yield from msg.walk()
    except Exception:
        yield msg


def html_to_text(markup: str) -> str:
    """Readable text from HTML: blocks become lines, tags go, entities are decoded."""
    markup = _BLOCK_RE.sub("\n", markup)
    markup = _TAG_RE.sub("", markup)
    lines = (_BLANKS_RE.sub(" ", line).strip() for line in html.unescape(markup).splitlines())
    return "\n".join(lines)


def text_body(msg: Message) -> str:
    """The message's readable text: the first text/plain part, else the first HTML part.

    Attached messages (message/rfc822, as in bounce reports) are not descended into.
    """
    plain, markup = _first_texts(msg)
    if plain is not None and plain.strip():
        text = plain
    elif markup is not None:
        text = html_to_text(markup)
    else:
        text = plain or ""
    return text.replace("\r\n", "\n").replace("\r", "\n")[:MAX_BODY_CHARS]


def _first_texts(msg: Message) -> tuple[str | None, str | None]:
    plain: str | None = None
    markup: str | None = None
    stack = [msg]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        if part.is_multipart():
            if ctype == "message/rfc822" and part is not msg:
                continue
            payload = part.get_payload()
            if isinstance(payload, list):
                stack[0:0] = [p for p in payload if isinstance(p, Message)]
            continue
        if part.get_content_disposition() == "attachment":
            continue
        if ctype == "text/plain" and plain is None:
            plain = payload_text(part)
        elif ctype == "text/html" and markup is None:
            markup = payload_text(part)
        if plain is not None:
            break
    return plain, markup


def message_ids(value: str) -> list[str]:
    """The Message-IDs in a header value such as References, without angle brackets."""
    found = _MSGID_RE.findall(value)
    if not found and value.strip() and " " not in value.strip():
        found = [value.strip()]
    return found


def addresses(msg: Message, name: str) -> list[str]:
    """The lower-cased addresses in an address header."""
    try:
        pairs = getaddresses([header(msg, name)])
    except Exception:
        return []
    return [addr.strip().lower() for _name, addr in pairs if "@" in addr]


def sender(msg: Message) -> str | None:
    """The From address, lower-cased, or None."""
    found = addresses(msg, "From")
    return found[0] if found else None
