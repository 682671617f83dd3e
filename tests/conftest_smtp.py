"""A real SMTP server on a loopback port for tests: it keeps what it gets and can misbehave."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["Received", "SmtpSink", "free_port", "self_signed_tls", "smtp_sink"]


@dataclass
class Received:
    """One message as the server took it: the envelope and the exact DATA bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)
    at: float = field(default_factory=time.monotonic, compare=False)  # when it was taken


class SinkHandler:
    """aiosmtpd hooks that store messages, or answer and stall as the sink is told."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Count the connection, then accept the sender unless told otherwise."""
        if not any(seen is session for seen in self.sink.sessions):
            self.sink.sessions.append(session)
        await self.sink.stall("MAIL")
        if "MAIL" in self.sink.replies:
            return self.sink.replies["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept a recipient unless it is refused or the sink answers RCPT for all."""
        await self.sink.stall("RCPT")
        answer = self.sink.refuse.get(address) or self.sink.replies.get("RCPT")
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message; then answer, stall, or hang up without answering."""
        await self.sink.stall("DATA")
        if "DATA" in self.sink.replies:
            return self.sink.replies["DATA"]
        content = envelope.original_content or b""
        options = list(envelope.mail_options)
        self.sink.messages.append(
            Received(envelope.mail_from or "", list(envelope.rcpt_tos), content, options)
        )
        if self.sink.drop_after_data:
            # The message is in; the client never hears so. This is the ambiguous case.
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
        return f"250 2.0.0 Ok: queued as Q{len(self.sink.messages)}"


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 and a free port; start() it or use it with `with`."""

    def __init__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = free_port()
        self.messages: list[Received] = []
        self.sessions: list[Session] = []
        self.replies: dict[str, str] = {}  # "MAIL" | "RCPT" | "DATA" -> canned answer
        self.refuse: dict[str, str] = {}  # recipient -> answer, e.g. "550 5.1.1 No such user"
        self.hang: dict[str, float] = {}  # step -> seconds to wait before answering
        self.drop_after_data = False
        self.credentials = credentials
        self.controller = Controller(
            SinkHandler(self),
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=implicit_tls,
            server_hostname="sink.test",
            **self._smtp_options(credentials, starttls),
        )

    @property
    def connections(self) -> int:
        """How many connections have started a mail transaction."""
        return len(self.sessions)

    def url(self, scheme: str = "smtp", userinfo: str = "", query: str = "") -> str:
        """Return the URL SmtpMailer takes for this sink."""
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}127.0.0.1:{self.port}" + (f"?{query}" if query else "")

    async def stall(self, step: str) -> None:
        """Sleep before answering step, if told to."""
        if step in self.hang:
            await asyncio.sleep(self.hang[step])

    def start(self) -> SmtpSink:
        """Start serving in a background thread."""
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled handlers are cancelled."""
        self.controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _smtp_options(
        self, credentials: tuple[str, str] | None, starttls: ssl.SSLContext | None
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"tls_context": starttls}
        if credentials is not None:
            options.update(
                auth_required=True, auth_require_tls=False, authenticator=self._authenticate
            )
        return options

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.credentials == (
            data.login.decode(),
            data.password.decode(),
        )
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    """Return a loopback port nothing listens on (at least for now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_tls() -> ssl.SSLContext:
    """Return a server TLS context with a fresh self-signed certificate for sink.test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("sink.test")]), False)
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
    return context


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A started SmtpSink, stopped after the test."""
    with SmtpSink() as sink:
        yield sink
