"""The IMAP mailbox source against a real Dovecot (.ci/dovecot): once per message, even after a
crash; IDLE; moving; TLS; and the errors a wrong URL gives."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from outreach.errors import InputError, RetryableError
from outreach.inbound.imap import (
    INGESTED,
    ImapSettings,
    Mailbox,
    MailboxRefused,
    MailboxUnavailable,
)
from tests import conftest_imap
from tests.conftest import require
from tests.conftest_imap import DOVECOT_DIR, ImapBox
from tests.conftest_smtp import free_port

dovecot = conftest_imap.dovecot  # the shared fixtures, made visible to this module
imap_box = conftest_imap.imap_box

FLAG = INGESTED.encode()
WAIT = 10.0  # generous: these arrive in well under a second


def message(n: int) -> bytes:
    """A message with CRLF line ends, 8-bit bytes and a line with a lone dot."""
    return (
        f"Message-ID: <m{n}@test.example>\r\n"
        "From: Bob <bob@example.com>\r\nTo: ann@acme.example\r\n"
        f"Subject: Re: Quick question {n}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"Hej! Grüße, message {n}.\r\n.\r\n> quoted\r\n"
    ).encode()


def msgid(n: int) -> bytes:
    return f"<m{n}@test.example>".encode()


class Crash(BaseException):
    """Like the process dying: not an Exception, so the loop does not catch it."""


@contextmanager
def running(
    mailbox: Mailbox, handle: Callable[[bytes], object], idle_seconds: float
) -> Iterator[None]:
    """Run mailbox.poll(once=False) in a thread; stop and join it on the way out."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            mailbox.poll(handle, stop=stop, idle_seconds=idle_seconds)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(WAIT)
        mailbox.close()
    assert not thread.is_alive(), "the loop did not stop"
    assert errors == []


def test_poll_once_hands_each_message_once_with_its_bytes(imap_box: ImapBox) -> None:
    sent = [message(n) for n in range(1, 6)]
    imap_box.append(*sent)
    got: list[bytes] = []
    with Mailbox(imap_box.url(), chunk=2) as mailbox:  # chunk=2: three FETCHes
        assert mailbox.poll(got.append, once=True) == 5
        assert got == sent
        assert mailbox.poll(got.append, once=True) == 0
    assert len(got) == 5
    flags = imap_box.flags()
    assert all(FLAG in flags[msgid(n)] for n in range(1, 6))
    assert not any(b"\\Seen" in f for f in flags.values())  # BODY.PEEK: still unread


def test_a_failing_handler_leaves_its_message_for_the_next_pass(
    imap_box: ImapBox, caplog: pytest.LogCaptureFixture
) -> None:
    imap_box.append(*(message(n) for n in range(1, 5)))
    got: list[bytes] = []

    def handle(raw: bytes) -> None:
        got.append(raw)
        if raw == message(3) and got.count(raw) == 1:
            raise ValueError("database down")

    with Mailbox(imap_box.url()) as mailbox:
        assert mailbox.poll(handle, once=True) == 3
        assert FLAG not in imap_box.flags()[msgid(3)]
        assert mailbox.poll(handle, once=True) == 1
    assert got == [message(1), message(2), message(3), message(4), message(3)]
    assert "stays unmarked" in caplog.text


def test_after_a_crash_a_new_process_gets_only_the_unmarked_rest(imap_box: ImapBox) -> None:
    sent = [message(n) for n in range(1, 6)]
    imap_box.append(*sent)
    first: list[bytes] = []

    def crash_on_third(raw: bytes) -> None:
        first.append(raw)
        if len(first) == 3:
            raise Crash

    mailbox = Mailbox(imap_box.url())
    with pytest.raises(Crash):
        mailbox.poll(crash_on_third, once=True)
    mailbox.close()
    flags = imap_box.flags()
    assert [FLAG in flags[msgid(n)] for n in range(1, 6)] == [True, True, False, False, False]

    second: list[bytes] = []
    with Mailbox(imap_box.url()) as restarted:  # a new connection, as after a restart
        assert restarted.poll(second.append, once=True) == 3
    assert first == sent[:3]
    assert second == sent[2:]
    everything = first + second
    assert {raw: everything.count(raw) for raw in sent} == {
        sent[0]: 1,
        sent[1]: 1,
        sent[2]: 2,  # the one the crash cut short: handled, never marked
        sent[3]: 1,
        sent[4]: 1,
    }


def test_idle_hands_over_a_message_delivered_while_waiting(imap_box: ImapBox) -> None:
    imap_box.append(message(1))
    got: list[bytes] = []
    arrived = {n: threading.Event() for n in (1, 2)}

    def handle(raw: bytes) -> None:
        got.append(raw)
        arrived[len(got)].set()

    mailbox = Mailbox(imap_box.url())
    # A minute between passes: only IDLE can bring message 2 within WAIT.
    with running(mailbox, handle, idle_seconds=60):
        assert arrived[1].wait(WAIT)
        imap_box.append(message(2))
        assert arrived[2].wait(WAIT), "IDLE did not wake the loop"
    assert got == [message(1), message(2)]


def test_a_message_arriving_during_a_pass_does_not_wait_for_the_timer(
    imap_box: ImapBox,
) -> None:
    imap_box.append(message(1))
    got: list[bytes] = []
    both = threading.Event()

    def handle(raw: bytes) -> None:
        got.append(raw)
        if len(got) == 1:  # the server announces it in its answer to our STORE, not in IDLE
            imap_box.append(message(2))
        else:
            both.set()

    with running(Mailbox(imap_box.url()), handle, idle_seconds=60):
        assert both.wait(WAIT)
    assert got == [message(1), message(2)]


class LateMailbox(Mailbox):
    """Delivers a message right after its first empty SEARCH: just before it IDLEs."""

    def __init__(self, url: str, box: ImapBox) -> None:
        super().__init__(url)
        self.box = box
        self.delivered = False

    def new_uids(self) -> list[int]:
        uids = super().new_uids()
        if not uids and not self.delivered:
            self.delivered = True
            self.box.append(message(1))
            time.sleep(0.2)  # let the server see it before our IDLE
        return uids


def test_a_message_arriving_just_before_idle_is_not_missed(imap_box: ImapBox) -> None:
    got: list[bytes] = []
    arrived = threading.Event()

    def handle(raw: bytes) -> None:
        got.append(raw)
        arrived.set()

    # The server answers IDLE with "+ idling" and the news in one packet: already read
    # into imaplib's buffer, where select() does not see it.
    with running(LateMailbox(imap_box.url(), imap_box), handle, idle_seconds=60):
        assert arrived.wait(WAIT)
    assert got == [message(1)]


def test_without_idle_it_polls_on_a_timer(imap_box: ImapBox) -> None:
    got: list[bytes] = []
    arrived = threading.Event()

    def handle(raw: bytes) -> None:
        got.append(raw)
        arrived.set()

    with running(Mailbox(imap_box.url(), use_idle=False), handle, idle_seconds=0.3):
        imap_box.append(message(1))
        assert arrived.wait(WAIT)
    assert got == [message(1)]


def test_the_loop_reconnects_when_the_server_drops_it(
    imap_box: ImapBox, caplog: pytest.LogCaptureFixture
) -> None:
    config = DOVECOT_DIR / "dovecot.conf"
    require("the .ci/dovecot configuration (for doveadm kick)", config.stat)
    got: list[bytes] = []
    arrived = {n: threading.Event() for n in (1, 2)}

    def handle(raw: bytes) -> None:
        got.append(raw)
        arrived[len(got)].set()

    imap_box.append(message(1))
    mailbox = Mailbox(imap_box.url(), backoff=(0.1, 1.0))
    with caplog.at_level(logging.WARNING), running(mailbox, handle, idle_seconds=60):
        assert arrived[1].wait(WAIT)
        kick = ["doveadm", "-c", str(config), "kick", "outreach"]
        subprocess.run(kick, check=True, capture_output=True, timeout=WAIT)
        imap_box.append(message(2))
        assert arrived[2].wait(WAIT), "the loop did not come back"
    assert got == [message(1), message(2)]
    assert "reconnecting" in caplog.text


def test_move_mode_moves_handled_messages_out(imap_box: ImapBox) -> None:
    imap_box.append(message(1), message(2))
    got: list[bytes] = []
    with Mailbox(imap_box.url(query=f"insecure=1&move={imap_box.processed}")) as mailbox:
        assert mailbox.poll(got.append, once=True) == 2
        assert mailbox.poll(got.append, once=True) == 0
    assert got == [message(1), message(2)]
    assert imap_box.flags() == {}
    moved = imap_box.flags(imap_box.processed)
    assert set(moved) == {msgid(1), msgid(2)}


def test_imaps_with_a_self_signed_certificate(imap_box: ImapBox) -> None:
    require("IMAPS on 127.0.0.1:10993", conftest_imap.greets_tls)
    imap_box.append(message(1))
    got: list[bytes] = []
    with Mailbox(imap_box.url("imaps")) as mailbox:
        assert mailbox.poll(got.append, once=True) == 1
    assert got == [message(1)]


@pytest.mark.parametrize("scheme", ["imap", "imaps"])
def test_an_untrusted_certificate_is_refused(imap_box: ImapBox, scheme: str) -> None:
    with pytest.raises(MailboxRefused, match="insecure=1") as caught:
        Mailbox(imap_box.url(scheme, query="")).connect()
    assert isinstance(caught.value, InputError)


def test_a_wrong_password_is_an_input_error(imap_box: ImapBox) -> None:
    mailbox = Mailbox(imap_box.url(password="wrong"))
    with pytest.raises(MailboxRefused, match="login refused") as caught:
        mailbox.poll(lambda raw: None, once=False)  # not retried: it will not fix itself
    assert isinstance(caught.value, InputError)
    assert "wrong" not in str(caught.value)


def test_a_missing_mailbox_is_an_input_error(imap_box: ImapBox) -> None:
    url = imap_box.url().replace(imap_box.folder, "NoSuchFolder")
    with pytest.raises(MailboxRefused, match="NoSuchFolder"):
        Mailbox(url).connect()


def test_a_closed_port_is_retryable() -> None:
    mailbox = Mailbox(f"imap://u:p@127.0.0.1:{free_port()}/INBOX", timeout=3)
    with pytest.raises(MailboxUnavailable) as caught:
        mailbox.poll(lambda raw: None, once=True)
    assert isinstance(caught.value, RetryableError)


def test_the_loop_retries_a_closed_port_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    mailbox = Mailbox(f"imap://u:p@127.0.0.1:{free_port()}/INBOX", backoff=(0.05, 0.1))
    with caplog.at_level(logging.WARNING), running(mailbox, lambda raw: None, idle_seconds=1):
        deadline = threading.Event()
        deadline.wait(0.5)
    assert caplog.text.count("reconnecting") >= 2


# --- URL parsing (no server needed) ----------------------------------------


def test_url_parsing() -> None:
    s = ImapSettings.from_url("imaps://ann%40acme.example:p%2Fss%20w@mail.example/Sales%2FReplies")
    assert (s.host, s.port, s.implicit_tls, s.verify) == ("mail.example", 993, True, True)
    assert (s.username, s.password, s.mailbox, s.move_to) == (
        "ann@acme.example",
        "p/ss w",
        "Sales/Replies",
        None,
    )
    assert "p/ss w" not in repr(s)
    s = ImapSettings.from_url("imap://u:p@h:1143?move=Processed&insecure=1")
    assert (s.port, s.implicit_tls, s.verify, s.mailbox, s.move_to) == (
        1143,
        False,
        False,
        "INBOX",
        "Processed",
    )
    assert ImapSettings.from_url("imap://u:p@h/").port == 143
    assert ImapSettings.from_url("imap://u@h/?verify=no").verify is False


@pytest.mark.parametrize(
    "url",
    [
        "http://u:p@h/INBOX",
        "imap:///INBOX",
        "imap://h/INBOX",
        "imap://u:p@h:port/INBOX",
        "imap://u:p@h/INBOX?mvoe=Processed",
        "imap://u:p@h/INBOX?insecure=maybe",
    ],
)
def test_bad_urls_are_input_errors(url: str) -> None:
    with pytest.raises(InputError):
        ImapSettings.from_url(url)
