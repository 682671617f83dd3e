"""SMTP delivery: one connection per thread, each step's failure mapped to what to do next."""

from __future__ import annotations

import re
import select
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from outreach.errors import InputError
from outreach.mailers.base import (
    AmbiguousMailError,
    AnsweredError,
    PermanentMailError,
    TransientMailError,
)

# "connect": nothing was offered yet; "envelope": MAIL, RCPT, DATA and the payload
# itself, which cannot be delivered before its final "."; "final": the payload is out.
Phase = Literal["connect", "envelope", "final"]

_EOL = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_NO = {"no", "false", "off", "0"}


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to connect, read from an smtp:// or smtps:// URL."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = True
    verify: bool = True
    helo: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """Parse smtp://[user:pass@]host:port or smtps://…; ?starttls=no, ?verify=no, ?helo=."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise InputError(f"not an smtp:// or smtps:// URL with a host: {parts.scheme}://…")
        try:
            port = parts.port
        except ValueError as exc:
            raise InputError(f"bad port in the SMTP URL: {exc}") from exc
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=query.get("starttls", "yes").lower() not in _NO,
            verify=query.get("verify", "yes").lower() not in _NO,
            helo=query.get("helo"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def tls_context(self) -> ssl.SSLContext:
        """Return the TLS context; ?verify=no accepts self-signed test certificates."""
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@contextmanager
def map_smtp_errors(phase: Phase) -> Iterator[None]:
    """Turn smtplib and socket errors into transient, permanent or ambiguous send errors."""
    try:
        yield
    except smtplib.SMTPResponseException as exc:
        raise _from_reply(phase, exc.smtp_code, exc.smtp_error) from exc
    except OSError as exc:  # refused, timeout, reset, TLS; smtplib's own errors too
        if phase == "final":
            raise AmbiguousMailError(f"connection lost awaiting the final answer: {exc}") from exc
        raise TransientMailError(f"SMTP connection failed: {exc}") from exc
    except UnicodeError as exc:  # smtplib speaks ASCII: no SMTPUTF8, or a non-ASCII login
        if phase == "connect":
            raise TransientMailError(f"SMTP login needs ASCII credentials: {exc}") from exc
        raise PermanentMailError(f"the SMTP server cannot take this address: {exc}") from exc


def _from_reply(phase: Phase, code: int, text: bytes | str) -> AnsweredError:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    answer = f"{code} {text}".replace("\n", " ")
    message = f"SMTP server answered {answer}"
    # Refusals while connecting (greeting, TLS, AUTH) are about us, not this message.
    if phase == "connect" or 400 <= code < 500:
        return TransientMailError(message, code, answer)
    if 500 <= code < 600:
        return PermanentMailError(message, code, answer)
    if phase == "final":
        return AmbiguousMailError(message, code, answer)
    return TransientMailError(message, code, answer)


class SmtpMailer:
    """Sends over SMTP, reusing one connection per thread."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.settings = SmtpSettings.from_url(url)
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[smtplib.SMTP] = set()
        self._helo = self.settings.helo

    def send(
        self, envelope_from: str, recipients: Sequence[str], data: bytes, message_id: str
    ) -> str | None:
        """Send one message and return the server's final answer (often its queue id)."""
        if not recipients:
            raise ValueError(f"no recipients for {message_id}")
        conn = self._connection()
        try:
            return _transaction(conn, envelope_from, recipients, data)
        except AnsweredError as exc:
            self._recover(conn, exc)
            raise

    def close(self) -> None:
        """Quit every connection this mailer opened; call it when no send is in flight."""
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            _quit(conn)
        self._local = threading.local()

    def _connection(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None and _idle_closed(conn):
            self._discard(conn)
            conn = None
        return conn or self._connect()

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        with map_smtp_errors("connect"):
            if self._helo is None:
                self._helo = socket.getfqdn()  # once: it may ask DNS
            conn = _open(settings, self._helo, self.timeout)
        try:
            with map_smtp_errors("connect"):
                _greet(conn, settings)
        except AnsweredError:
            _quit(conn)
            raise
        with self._lock:
            self._open.add(conn)
        self._local.conn = conn
        return conn

    def _recover(self, conn: smtplib.SMTP, exc: AnsweredError) -> None:
        """Keep the connection after a plain refusal; drop it after anything else."""
        if exc.code is not None and exc.code != 421 and not isinstance(exc, AmbiguousMailError):
            try:
                if conn.rset()[0] == 250:
                    return
            except (smtplib.SMTPException, OSError):
                pass
        self._discard(conn)

    def _discard(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            self._open.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        _quit(conn, politely=False)


def _open(settings: SmtpSettings, helo: str, timeout: float) -> smtplib.SMTP:
    if settings.implicit_tls:
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            local_hostname=helo,
            timeout=timeout,
            context=settings.tls_context(),
        )
    return smtplib.SMTP(settings.host, settings.port, local_hostname=helo, timeout=timeout)


def _greet(conn: smtplib.SMTP, settings: SmtpSettings) -> None:
    conn.ehlo_or_helo_if_needed()
    if settings.starttls and not settings.implicit_tls and conn.has_extn("starttls"):
        conn.starttls(context=settings.tls_context())
        conn.ehlo_or_helo_if_needed()
    if settings.username is not None:
        conn.login(settings.username, settings.password or "")


def _transaction(
    conn: smtplib.SMTP, envelope_from: str, recipients: Sequence[str], data: bytes
) -> str:
    with map_smtp_errors("envelope"):
        conn.command_encoding = "ascii"
        _expect(conn.mail(envelope_from, _mail_options(conn, envelope_from, recipients, data)))
        _rcpt(conn, recipients)
        _expect(conn.docmd("DATA"), 354)
        conn.send(_payload(data))
    with map_smtp_errors("final"):
        code, text = _expect(conn.getreply())
    return f"{code} {text.decode('utf-8', 'replace')}"


def _mail_options(
    conn: smtplib.SMTP, envelope_from: str, recipients: Sequence[str], data: bytes
) -> list[str]:
    options = []
    if not data.isascii() and conn.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    addresses = [envelope_from, *recipients]
    if not all(address.isascii() for address in addresses) and conn.has_extn("smtputf8"):
        options.append("SMTPUTF8")
    return options


def _rcpt(conn: smtplib.SMTP, recipients: Sequence[str]) -> None:
    """Offer every recipient; any refusal aborts the message, a 5xx one before a 4xx."""
    refused = [reply for reply in map(conn.rcpt, recipients) if reply[0] not in (250, 251)]
    if refused:
        code, text = next((reply for reply in refused if reply[0] >= 500), refused[0])
        raise smtplib.SMTPResponseException(code, text)


def _expect(reply: tuple[int, bytes], *ok: int) -> tuple[int, bytes]:
    code, text = reply
    if code not in (ok or (250,)):
        raise smtplib.SMTPResponseException(code, text)
    return reply


def _payload(data: bytes) -> bytes:
    """Return data with CRLF line ends, dot-stuffed and terminated for DATA (RFC 5321)."""
    data = _LEADING_DOT.sub(b"..", _EOL.sub(b"\r\n", data))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _idle_closed(conn: smtplib.SMTP) -> bool:
    """Whether the server hung up (or said 421) while the connection sat idle."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _quit(conn: smtplib.SMTP, politely: bool = True) -> None:
    try:
        if politely:
            conn.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        conn.close()
