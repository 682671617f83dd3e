"""Fuzzing inbound mail: classify never raises; ingest never raises and always keeps the message."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session, select

from outreach.app import App
from outreach.inbound.classify import Classification, classify_bytes
from outreach.inbound.ingest import MAX_KEPT_BYTES, ingest
from outreach.models import InboundMessage
from tests.fuzz.conftest import fuzz_settings

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STATUSES = ("processed", "unmatched", "error")
CORPUS = sorted(
    [
        *(ROOT / "tests" / "corpora" / "bounces").glob("*.eml"),
        *(ROOT / "tests" / "fixtures" / "replies").glob("*.eml"),
        *(ROOT / "tests" / "fixtures" / "autoreplies").glob("*.eml"),
    ]
)
_COUNTER = itertools.count()
_CHARSET_RE = re.compile(rb'charset="?[A-Za-z0-9_.:-]*"?', re.I)
_CTE_RE = re.compile(rb"Content-Transfer-Encoding:[^\r\n]*", re.I)
BAD_CHARSETS = [
    b"x-unknown",
    b"utf-7",
    b"utf-16",
    b"utf-32",
    b"rot13",
    b"base64",
    b"zlib",
    b"uu",
    b"hex",
    b"unicode-escape",
    b"charmap",
    b"",
    b"\xff\xfe",
    b"iso-2022-jp",
]
BAD_ENCODINGS = [b"base64", b"quoted-printable", b"x-uuencode", b"uuencode", b"8bit", b"gzip", b""]
HEADERS = [
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"In-Reply-To",
    b"References",
    b"Content-Type",
    b"Auto-Submitted",
    b"X-Autoreply",
    b"Return-Path",
    b"List-Unsubscribe",
]
HEADER_VALUES = [
    b"",
    b"=?utf-8?b?////?=",
    b"=?bogus?q?=FF=FE?=",
    b"=?utf-8?q?" + b"=E2=9C=89" * 2000 + b"?=",
    b"<" * 500,
    b"a" * 100_000,
    b"\xff\xfe\x00",
    b"multipart/mixed; boundary=",
    b'multipart/report; report-type=delivery-status; boundary="x"',
    b"message/rfc822",
    b'text/plain; charset="\xff"',
    b"Mon, 99 Foo 99999 99:99:99 +9999",
    b"Thu, 01 Jan 1970 00:00:00 -2400",
    b"Fri, 31 Dec 9999 23:59:59 -1200",
    b"auto-replied",
    b'"Ann" <ann@example.com>, ,,, <>',
]


def _corpus() -> st.SearchStrategy[bytes]:
    return st.sampled_from(CORPUS).map(lambda p: p.read_bytes())


def _wrap_multipart(raw: bytes, depth: int, boundary_junk: bool) -> bytes:
    """Nest the message `depth` times in multipart/mixed (and message/rfc822) containers."""
    for level in range(depth):
        boundary = b"b%d" % level if not boundary_junk else b"=_" * 40
        raw = (
            b"From: nest@example.com\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
            b"--" + boundary + b"\r\nContent-Type: message/rfc822\r\n\r\n" + raw + b"\r\n"
            b"--" + boundary + b"--\r\n"
        )
    return raw


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A real message, damaged a few ways."""
    raw = draw(_corpus())
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        action = draw(
            st.sampled_from(
                [
                    "truncate",
                    "flip",
                    "dup_header",
                    "add_header",
                    "charset",
                    "encoding",
                    "nest",
                    "long_line",
                    "strip_crlf",
                    "insert",
                    "drop_headers",
                ]
            )
        )
        if action == "truncate" and raw:
            raw = raw[: draw(st.integers(0, len(raw)))]
        elif action == "flip" and raw:
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(0, len(raw) - 1))
                raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
        elif action == "dup_header":
            name = draw(st.sampled_from(HEADERS))
            value = draw(st.sampled_from(HEADER_VALUES))
            raw = (name + b": " + value + b"\r\n") * draw(st.integers(2, 5)) + raw
        elif action == "add_header":
            name = draw(st.sampled_from(HEADERS))
            value = draw(st.one_of(st.sampled_from(HEADER_VALUES), st.binary(max_size=60)))
            raw = name + b": " + value + b"\r\n" + raw
        elif action == "charset":
            new = b"charset=" + draw(st.sampled_from(BAD_CHARSETS))
            raw = _CHARSET_RE.sub(lambda _m, new=new: new, raw)
        elif action == "encoding":
            new = b"Content-Transfer-Encoding: " + draw(st.sampled_from(BAD_ENCODINGS))
            raw = _CTE_RE.sub(lambda _m, new=new: new, raw)
        elif action == "nest":
            raw = _wrap_multipart(raw, draw(st.integers(1, 30)), draw(st.booleans()))
        elif action == "long_line":
            raw = b"X-Long: " + b"x" * draw(st.integers(1000, 200_000)) + b"\r\n" + raw
        elif action == "strip_crlf":
            raw = raw.replace(b"\r\n", b"\n") if draw(st.booleans()) else raw.replace(b"\n", b"\r")
        elif action == "insert" and raw:
            i = draw(st.integers(0, len(raw)))
            raw = raw[:i] + draw(st.binary(max_size=40)) + raw[i:]
        elif action == "drop_headers":
            head, _sep, body = (
                raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else (raw.partition(b"\n\n"))
            )
            raw = body if draw(st.booleans()) else head
    return raw


RAW = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    mutated_messages(),
    mutated_messages(),
)


def _check_classification(found: Classification) -> None:
    assert isinstance(found, Classification)
    found.to_json()


@fuzz_settings(120)
@given(raw=RAW)
def test_classify_bytes_never_raises(raw: bytes) -> None:
    _check_classification(classify_bytes(raw, NOW))


@fuzz_settings(80)
@given(raw=RAW, source=st.one_of(st.just("-"), st.text(max_size=30)), again=st.booleans())
def test_ingest_keeps_every_message(app: App, raw: bytes, source: str, again: bool) -> None:
    tag = f"fuzz-{next(_COUNTER)}-{source}"
    result = ingest(app, raw, NOW, tag)
    assert result.status in STATUSES, result
    assert result.id is not None
    with Session(app.engine) as session:
        row = session.get(InboundMessage, result.id)
        assert row is not None, result
        if not result.duplicate:
            assert row.raw == raw[:MAX_KEPT_BYTES]
            assert row.size == len(raw)
            assert str(row.status) == result.status
        assert str(row.status) in STATUSES
    if again:
        second = ingest(app, raw, NOW, tag)
        assert second.duplicate and second.id == result.id, second
        with Session(app.engine) as session:
            count = len(session.exec(select(InboundMessage.id)).all())
        assert count >= 1


def test_every_corpus_message_is_kept(app: App) -> None:
    for path in CORPUS:
        raw = path.read_bytes()
        result = ingest(app, raw, NOW, path.name)
        assert result.status in STATUSES, (path, result)
        with Session(app.engine) as session:
            row = session.get(InboundMessage, result.id)
            assert row is not None
            assert result.duplicate or row.raw == raw


# --- crashes found by fuzzing, now fixed -------------------------------------


def test_idna_charset_does_not_crash_classify() -> None:
    raw = b"From: mailer-daemon@example.com\nContent-Type: text/plain; charset=idna\n\n\xc3\xa9\n"
    _check_classification(classify_bytes(raw, NOW))


def test_punycode_charset_does_not_crash_classify() -> None:
    raw = b"From: a@example.com\nSubject: x\nContent-Type: text/plain; charset=punycode\n\na b\n"
    _check_classification(classify_bytes(raw, NOW))


def test_nul_in_charset_does_not_crash_classify() -> None:
    raw = b'From: a@example.com\nSubject: x\nContent-Type: text/plain; charset="utf-8\x00"\n\nhi\n'
    _check_classification(classify_bytes(raw, NOW))


@pytest.mark.parametrize(
    "raw",
    [
        b"From: mailer-daemon@example.com\nContent-Type: text/plain; charset=idna\n\n\xc3\xa9\n",
        b'From: a@example.com\nSubject: x\nContent-Type: text/plain; charset="utf-8\x00"\n\nhi\n',
        b"From: a@example.com\nSubject: x\nContent-Type: text/plain; charset=punycode\n\na b\n",
    ],
)
def test_ingest_keeps_messages_with_odd_charsets(app: App, raw: bytes) -> None:
    result = ingest(app, raw, NOW, "odd-charset")
    assert result.status == "unmatched" and result.id is not None
    with Session(app.engine) as session:
        row = session.get(InboundMessage, result.id)
        assert row is not None and row.raw == raw
