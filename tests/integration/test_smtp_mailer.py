"""SmtpMailer against a real aiosmtpd server on loopback; OutboxMailer on a real folder."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from outreach.errors import AmbiguousSendError, PermanentSendError, TransientSendError
from outreach.mailers import OutboxMailer, SmtpMailer, make_mailer
from outreach.mailers.smtp import SmtpSettings
from outreach.message import OutgoingEmail, build_message, make_message_id
from tests import conftest_smtp
from tests.conftest_smtp import Received, SmtpSink, free_port, self_signed_tls

smtp_sink = conftest_smtp.smtp_sink  # the shared fixture, made visible to this module

# aiosmtpd warns that AUTH without TLS is unsafe; these sinks are loopback-only.
auth_without_tls = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SENDER = "bounces+e1@acme.example"
TO = "bob@example.com"


def message(key: str = "e1.s1") -> tuple[str, bytes]:
    message_id = make_message_id(key, "acme.example")
    outgoing = OutgoingEmail(
        message_id=message_id,
        sender="Ann Rep <ann@acme.example>",
        to_email=TO,
        to_name="Bob",
        reply_to=None,
        subject="Quick question",
        # Lines that SMTP must dot-stuff, and a lone dot that would end DATA early.
        text=".hidden\n..two dots\n.\nbye\n",
        html=None,
        date=datetime(2024, 5, 2, 9, 30, tzinfo=UTC),
        unsubscribe_url="https://out.acme.example/u/tok",
        unsubscribe_mailto="mailto:unsubscribe+tok@acme.example?subject=unsubscribe",
        postal_address="Acme Inc., 1 Main St, Springfield",
    )
    return message_id, build_message(outgoing)


@pytest.fixture
def mailer(smtp_sink: SmtpSink) -> Iterator[SmtpMailer]:
    mailer = SmtpMailer(smtp_sink.url(query="helo=client.test"), timeout=2.0)
    yield mailer
    mailer.close()


def send(mailer: SmtpMailer, key: str = "e1.s1", to: str = TO) -> str | None:
    message_id, data = message(key)
    return mailer.send(SENDER, [to], data, message_id)


def test_sink_gets_the_exact_bytes_and_envelope(smtp_sink: SmtpSink, mailer: SmtpMailer) -> None:
    message_id, data = message()
    answer = mailer.send(SENDER, [TO], data, message_id)
    assert answer == "250 2.0.0 Ok: queued as Q1"
    assert smtp_sink.messages == [Received(SENDER, [TO], data)]


def test_one_connection_serves_many_sends(smtp_sink: SmtpSink, mailer: SmtpMailer) -> None:
    for n in range(3):
        send(mailer, f"e{n}.s1")
    assert len(smtp_sink.messages) == 3
    assert smtp_sink.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(
    smtp_sink: SmtpSink, mailer: SmtpMailer
) -> None:
    send(mailer, "e1.s1")
    server = smtp_sink.controller.smtpd
    assert server is not None and server.transport is not None
    smtp_sink.controller.loop.call_soon_threadsafe(server.transport.close)
    time.sleep(0.2)  # let the server's loop run the close
    send(mailer, "e2.s1")
    assert len(smtp_sink.messages) == 2
    assert smtp_sink.connections == 2


@auth_without_tls
def test_auth_with_url_encoded_credentials() -> None:
    with SmtpSink(credentials=("ann@acme.example", "p@ss:w%rd/1")) as sink:
        userinfo = f"{quote('ann@acme.example', safe='')}:{quote('p@ss:w%rd/1', safe='')}"
        mailer = SmtpMailer(sink.url(userinfo=userinfo), timeout=2.0)
        send(mailer)
        mailer.close()
        assert len(sink.messages) == 1


@auth_without_tls
def test_bad_credentials_are_transient_not_the_messages_fault() -> None:
    with SmtpSink(credentials=("ann", "right")) as sink:
        mailer = SmtpMailer(sink.url(userinfo="ann:wrong"), timeout=2.0)
        with pytest.raises(TransientSendError) as caught:
            send(mailer)
        assert getattr(caught.value, "code", None) == 535
        assert sink.messages == []


@pytest.mark.parametrize("step", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize("answer", ["421 4.3.2 Shutting down", "451 4.3.0 Try again later"])
def test_4xx_is_transient_and_the_next_send_works(
    smtp_sink: SmtpSink, mailer: SmtpMailer, step: str, answer: str
) -> None:
    smtp_sink.replies[step] = answer
    with pytest.raises(TransientSendError) as caught:
        send(mailer)
    assert getattr(caught.value, "code", None) == int(answer[:3])
    assert getattr(caught.value, "answer", None) == answer
    smtp_sink.replies.clear()
    send(mailer, "e1.s2")
    assert len(smtp_sink.messages) == 1


def test_550_is_permanent_with_the_servers_answer(smtp_sink: SmtpSink, mailer: SmtpMailer) -> None:
    smtp_sink.refuse["nobody@example.com"] = "550 5.1.1 No such user"
    with pytest.raises(PermanentSendError) as caught:
        send(mailer, to="nobody@example.com")
    assert getattr(caught.value, "code", None) == 550
    assert getattr(caught.value, "answer", None) == "550 5.1.1 No such user"
    send(mailer, "e2.s1")
    assert [received.rcpt_tos for received in smtp_sink.messages] == [[TO]]
    assert smtp_sink.connections == 1  # RSET kept the connection


def test_one_refused_recipient_refuses_the_message(smtp_sink: SmtpSink, mailer: SmtpMailer) -> None:
    smtp_sink.refuse["nobody@example.com"] = "550 5.1.1 No such user"
    message_id, data = message()
    with pytest.raises(PermanentSendError):
        mailer.send(SENDER, [TO, "nobody@example.com"], data, message_id)
    assert smtp_sink.messages == []


def test_550_after_data_is_permanent(smtp_sink: SmtpSink, mailer: SmtpMailer) -> None:
    smtp_sink.replies["DATA"] = "554 5.7.1 Message rejected as spam"
    with pytest.raises(PermanentSendError) as caught:
        send(mailer)
    assert getattr(caught.value, "answer", None) == "554 5.7.1 Message rejected as spam"


def test_connection_refused_is_transient() -> None:
    mailer = SmtpMailer(f"smtp://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(TransientSendError):
        send(mailer)


def test_hang_up_after_data_is_ambiguous_and_the_next_send_reconnects(
    smtp_sink: SmtpSink, mailer: SmtpMailer
) -> None:
    smtp_sink.drop_after_data = True
    with pytest.raises(AmbiguousSendError):
        send(mailer)
    assert len(smtp_sink.messages) == 1  # it did arrive: this is why nobody may resend
    smtp_sink.drop_after_data = False
    send(mailer, "e1.s2")
    assert len(smtp_sink.messages) == 2
    assert smtp_sink.connections == 2


@pytest.mark.parametrize(
    ("step", "error"),
    [("MAIL", TransientSendError), ("RCPT", TransientSendError), ("DATA", AmbiguousSendError)],
)
def test_a_hang_times_out_by_phase(smtp_sink: SmtpSink, step: str, error: type[Exception]) -> None:
    smtp_sink.hang[step] = 5.0
    mailer = SmtpMailer(smtp_sink.url(), timeout=0.3)
    with pytest.raises(error):
        send(mailer)
    smtp_sink.hang.clear()
    send(mailer, "e1.s2")
    assert smtp_sink.messages[-1].data == message("e1.s2")[1]
    mailer.close()


def test_starttls_when_offered() -> None:
    with SmtpSink(starttls=self_signed_tls()) as sink:
        mailer = SmtpMailer(sink.url(query="verify=no"), timeout=2.0)
        send(mailer)
        mailer.close()
        assert len(sink.messages) == 1
        strict = SmtpMailer(sink.url(), timeout=2.0)
        with pytest.raises(TransientSendError):  # self-signed: verification fails
            send(strict)
        assert len(sink.messages) == 1


def test_implicit_tls() -> None:
    with SmtpSink(implicit_tls=self_signed_tls()) as sink:
        mailer = SmtpMailer(sink.url("smtps", query="verify=no"), timeout=2.0)
        send(mailer)
        mailer.close()
        assert len(sink.messages) == 1


def test_settings_from_url() -> None:
    settings = SmtpSettings.from_url("smtps://u%40x:p%3Aw@mail.example?verify=no")
    assert (settings.host, settings.port, settings.implicit_tls) == ("mail.example", 465, True)
    assert (settings.username, settings.password, settings.verify) == ("u@x", "p:w", False)
    assert "p:w" not in repr(settings)


def test_outbox_writes_parseable_eml_files(tmp_path: Path) -> None:
    outbox = make_mailer(None, tmp_path / "outbox")
    assert isinstance(outbox, OutboxMailer)
    names = [outbox.send(SENDER, [TO], message(f"e{n}.s1")[1], f"<e{n}.s1@acme>") for n in (1, 2)]
    files = sorted((tmp_path / "outbox").iterdir())
    assert [path.name for path in files] == sorted(str(name) for name in names)
    assert all(path.suffix == ".eml" for path in files)
    assert files[0].name.endswith("Z-e1.s1@acme.eml")
    parsed = email.message_from_bytes(files[0].read_bytes())
    assert parsed["Subject"] == "Quick question"
    assert files[0].read_bytes() == message("e1.s1")[1]


def test_make_mailer_picks_smtp_when_a_url_is_set(tmp_path: Path) -> None:
    mailer = make_mailer("smtp://127.0.0.1:2525", tmp_path)
    assert isinstance(mailer, SmtpMailer)
