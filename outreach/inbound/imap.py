"""An IMAP mailbox as a source of inbound mail: each message handed over once, then marked.

The URL (OUTREACH_IMAP_URL) is ``imaps://user:pass@host[:port]/Mailbox`` (TLS from the first
byte, port 993) or ``imap://…`` (port 143; STARTTLS when the server offers it, and then the
certificate must verify like with imaps). User, password and mailbox are URL-decoded; the
mailbox defaults to INBOX. Query options:

- ``?move=Processed``: move each handled message to that folder (created if missing) instead
  of leaving it in place with our keyword;
- ``?insecure=1`` (or ``?verify=no``): accept any TLS certificate, for self-signed test servers.

"Handled" means the message carries the keyword ``$OutreachIngested``: every pass fetches
``UID SEARCH NOT KEYWORD $OutreachIngested NOT DELETED`` (with BODY.PEEK[], so \\Seen is left
alone) and `Mailbox.done` sets the keyword once the caller has handled the message (and, with
``?move=``, then moves it). The mark lives on the server, so a restarted process does not see a
handled message again. UIDVALIDITY is not tracked: nothing is remembered by UID between
connections, so a renumbered mailbox only means its unmarked messages are fetched again.

A message whose handling ended but was not marked yet (the process died in between, or the
connection broke before the STORE) is handed over again on the next pass; the caller must
dedupe, as `outreach.inbound.ingest` does with its unique key per message. A handler that
raises leaves its message unmarked: it is logged and retried in the next round (after the
wait), and again after every wait until it succeeds.

New mail is noticed with IDLE when the server offers it (re-issued every 29 minutes), else by
searching again every `idle_seconds`. Nothing here knows about Dramatiq or FastAPI.
"""

from __future__ import annotations

import io
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from outreach.errors import InputError, RetryableError

INGESTED = "$OutreachIngested"
CHUNK = 100  # messages per FETCH
IDLE_RENEW_SECONDS = 29 * 60  # RFC 2177: re-issue IDLE before the server's 30-minute logout
TICK_SECONDS = 0.5  # how often a waiting loop looks at its stop event
_YES = {"1", "yes", "true", "on"}
_NO = {"0", "no", "false", "off"}
_OPTIONS = {"move", "insecure", "verify"}
# Untagged responses during IDLE that mean new mail (or a dying connection): end IDLE and look.
_WAKE = {b"EXISTS", b"RECENT", b"BYE"}

log = logging.getLogger("outreach.inbound.imap")


class MailboxRefused(InputError):
    """The IMAP server refused the login, the mailbox or its certificate: fix OUTREACH_IMAP_URL."""


class MailboxUnavailable(RetryableError):
    """The IMAP server could not be reached, dropped the connection or failed a command."""


@dataclass(frozen=True)
class ImapSettings:
    """Where and how to connect, read from an imap:// or imaps:// URL."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    mailbox: str = "INBOX"
    implicit_tls: bool = True
    verify: bool = True
    move_to: str | None = None

    @classmethod
    def from_url(cls, url: str) -> ImapSettings:
        """Parse imap[s]://user:pass@host[:port]/Mailbox[?move=Folder&insecure=1]."""
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise InputError(f"not an imap:// or imaps:// URL with a host: {parts.scheme}://…")
        if not parts.username:
            raise InputError("the IMAP URL needs a user: imaps://user:password@host/INBOX")
        try:
            port = parts.port
        except ValueError as exc:
            raise InputError(f"bad port in the IMAP URL: {exc}") from exc
        query = _query(parts.query)
        implicit = parts.scheme == "imaps"
        return cls(
            host=parts.hostname,
            port=port or (993 if implicit else 143),
            username=unquote(parts.username),
            password=unquote(parts.password or ""),
            mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
            implicit_tls=implicit,
            verify=_verify(query),
            move_to=query.get("move") or None,
        )

    @property
    def where(self) -> str:
        """host:port/mailbox, for messages and logs (never the password)."""
        return f"{self.host}:{self.port}/{self.mailbox}"

    def tls_context(self) -> ssl.SSLContext:
        """Return the TLS context; ?insecure=1 accepts self-signed test certificates."""
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _query(text: str) -> dict[str, str]:
    query = {key: values[-1] for key, values in parse_qs(text, keep_blank_values=True).items()}
    unknown = sorted(set(query) - _OPTIONS)
    if unknown:
        raise InputError(f"unknown IMAP URL option {', '.join(unknown)}: use move, insecure")
    return query


def _verify(query: dict[str, str]) -> bool:
    insecure = query.get("insecure", "0").lower()
    verify = query.get("verify", "yes").lower()
    if insecure not in _YES | _NO or verify not in _YES | _NO:
        raise InputError("the IMAP URL options insecure and verify take 1/yes or 0/no")
    return insecure in _NO and verify in _YES


@contextmanager
def imap_errors(settings: ImapSettings, *, refused: bool = False) -> Iterator[None]:
    """Map imapclient and socket errors; `refused`: a NO/BAD is the settings' fault."""
    try:
        yield
    except LoginError as exc:
        if "[UNAVAILABLE]" in str(exc):  # RFC 5530: the server cannot check it just now
            raise MailboxUnavailable(f"IMAP login at {settings.where} failed: {exc}") from exc
        raise MailboxRefused(f"IMAP login refused at {settings.where}: {_said(exc)}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise MailboxRefused(
            f"TLS certificate of {settings.where} not trusted ({exc.verify_message}); "
            "for a self-signed test server add ?insecure=1 to the URL"
        ) from exc
    except IMAPClientAbortError as exc:
        raise MailboxUnavailable(f"IMAP connection to {settings.where} lost: {exc}") from exc
    except IMAPClientError as exc:
        error = MailboxRefused if refused else MailboxUnavailable
        raise error(f"IMAP server at {settings.where} answered: {_said(exc)}") from exc
    except OSError as exc:  # refused, timeout, reset, TLS handshake
        raise MailboxUnavailable(f"IMAP connection to {settings.where} failed: {exc}") from exc


def _said(exc: Exception) -> str:
    """The server's words in an imapclient error, without the b'…' around them."""
    text = str(exc)
    return text[2:-1] if text.startswith("b'") and text.endswith("'") else text


class Mailbox:
    """One IMAP connection on one mailbox; not thread-safe: use it from one thread."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        chunk: int = CHUNK,
        use_idle: bool = True,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.settings = ImapSettings.from_url(url)
        self.timeout = timeout
        self.chunk = chunk
        self.use_idle = use_idle
        self.backoff = backoff
        self._client: Any = None  # imapclient.IMAPClient once connected

    # --- connection -------------------------------------------------------

    def connect(self) -> Mailbox:
        """Connect, log in and select the mailbox (creating the move folder if needed)."""
        self.close()
        with imap_errors(self.settings):
            client = self._open()
        try:
            with imap_errors(self.settings, refused=True):
                client.login(self.settings.username, self.settings.password)
                self._select(client)
        except BaseException:
            _shutdown(client)
            raise
        self._client = client
        log.debug("IMAP: connected to %s", self.settings.where)
        return self

    def close(self) -> None:
        """Log out (or just drop the connection if that fails); safe to call twice."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            _shutdown(client)

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may have died since)."""
        return self._client is not None

    def __enter__(self) -> Mailbox:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> Any:
        s = self.settings
        context = s.tls_context()
        client = IMAPClient(
            s.host, s.port, ssl=s.implicit_tls, ssl_context=context, timeout=self.timeout
        )
        try:
            if not s.implicit_tls and client.has_capability("STARTTLS"):
                client.starttls(context)
        except BaseException:
            _shutdown(client)
            raise
        return client

    def _select(self, client: Any) -> None:
        s = self.settings
        if s.move_to and not client.folder_exists(s.move_to):
            client.create_folder(s.move_to)
        state = client.select_folder(s.mailbox)
        if state.get(b"READ-WRITE") is False or b"READ-ONLY" in state:
            raise MailboxRefused(f"IMAP mailbox {s.where} is read-only")
        permanent = state.get(b"PERMANENTFLAGS", (b"\\*",))
        if b"\\*" not in permanent and INGESTED.encode() not in permanent:
            raise MailboxRefused(f"IMAP mailbox {s.where} does not keep keywords like {INGESTED}")

    def _live(self) -> Any:
        if self._client is None:
            self.connect()
        return self._client

    # --- messages ---------------------------------------------------------

    def new_uids(self) -> list[int]:
        """UIDs of the messages not handled yet, oldest first."""
        client = self._live()
        with imap_errors(self.settings):
            return sorted(client.search(["NOT", "KEYWORD", INGESTED, "NOT", "DELETED"]))

    def messages(self, uids: Sequence[int] | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield (uid, raw bytes) of each message not handled yet (or of `uids`), in chunks."""
        uids = self.new_uids() if uids is None else list(uids)
        for start in range(0, len(uids), self.chunk):
            batch = uids[start : start + self.chunk]
            with imap_errors(self.settings):
                found = self._live().fetch(batch, ["BODY.PEEK[]"])
            for uid in batch:
                raw = found.get(uid, {}).get(b"BODY[]")
                if raw is not None:  # None: expunged by someone else meanwhile
                    yield uid, bytes(raw)

    def done(self, uid: int) -> None:
        """Mark a handled message with our keyword; with ?move=, then move it too."""
        client = self._live()
        with imap_errors(self.settings):
            client.add_flags([uid], [INGESTED], silent=True)
            if self.settings.move_to:
                self._move(client, uid, self.settings.move_to)

    def _move(self, client: Any, uid: int, folder: str) -> None:
        if client.has_capability("MOVE"):
            client.move([uid], folder)
            return
        client.copy([uid], folder)
        client.add_flags([uid], [b"\\Deleted"], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])
        else:  # plain EXPUNGE also removes whatever else is flagged \Deleted
            client.expunge()

    # --- the loop ---------------------------------------------------------

    def poll(
        self,
        handle: Callable[[bytes], object],
        *,
        once: bool = False,
        idle_seconds: float = 300.0,
        stop: threading.Event | None = None,
    ) -> int:
        """Hand each new message to `handle`, mark it, and wait for more; return the count.

        `once`: one round (passes until a SEARCH finds nothing new but this round's failures),
        then return; connection errors are raised. Otherwise wait up to
        `idle_seconds` between passes (IDLE wakes it early on new mail), reconnect with
        backoff after connection errors, and return when `stop` is set. A refused login or
        mailbox (MailboxRefused) is raised either way.
        """
        stop = stop or threading.Event()
        handled = 0
        delay = self.backoff[0]
        while not stop.is_set():
            try:
                handled += self._drain(handle, stop)
                if once:
                    return handled
                delay = self.backoff[0]
                self.wait(idle_seconds, stop)
            except MailboxUnavailable as exc:
                self._drop()
                if once:
                    raise
                log.warning("IMAP: %s; reconnecting in %.1f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])
        return handled

    def _drain(self, handle: Callable[[bytes], object], stop: threading.Event) -> int:
        """Pass after pass until a SEARCH finds nothing new; return how many were handled.

        Searching again matters before IDLE: the server may have announced a message that
        arrived during the pass in its answer to a FETCH or STORE, and IDLE would not repeat
        it. Messages whose handler failed wait for the next round.
        """
        failed: set[int] = set()
        handled = 0
        while not stop.is_set():
            uids = [uid for uid in self.new_uids() if uid not in failed]
            if not uids:
                break
            for uid, raw in self.messages(uids):
                if stop.is_set():
                    break
                if self._hand(handle, uid, raw):
                    handled += 1
                else:
                    failed.add(uid)
        return handled

    def _hand(self, handle: Callable[[bytes], object], uid: int, raw: bytes) -> bool:
        """Hand one message over and mark it; False (logged, left unmarked) if handle raised."""
        try:
            handle(raw)
        except Exception:
            log.exception(
                "IMAP: handling UID %s of %s failed; it stays unmarked for the next round",
                uid,
                self.settings.where,
            )
            return False
        self.done(uid)
        return True

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _shutdown(client)

    # --- waiting ----------------------------------------------------------

    def wait(self, seconds: float, stop: threading.Event) -> None:
        """Wait up to `seconds` for new mail, with IDLE if the server has it, else sleeping."""
        client = self._live()
        deadline = time.monotonic() + seconds
        with imap_errors(self.settings):
            idle = self.use_idle and client.has_capability("IDLE")
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                span = min(left, IDLE_RENEW_SECONDS)
                if idle and self._idle(client, span, stop):
                    return
                if not idle:
                    stop.wait(span)
                    if time.monotonic() < deadline:
                        client.noop()  # keep the connection from the autologout timer

    def _idle(self, client: Any, seconds: float, stop: threading.Event) -> bool:
        """One IDLE of up to `seconds`; True when the server said something worth a look."""
        deadline = time.monotonic() + seconds
        client.idle()
        try:
            if _buffered(client):  # the news came in the same packet as "+ idling"
                return True
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                if not _readable(client.socket(), min(left, TICK_SECONDS)):
                    continue
                responses = client.idle_check(timeout=0)
                # Nothing parsed although the socket was readable: EOF (or a partial line).
                if not responses or any(_wakes(r) for r in responses):
                    return True
            return False
        finally:
            client.idle_done()


def _wakes(response: Sequence[object]) -> bool:
    return any(isinstance(part, bytes) and part.upper() in _WAKE for part in response[:2])


def _readable(sock: socket.socket, seconds: float) -> bool:
    """Whether the server sent something within `seconds` (or TLS holds decrypted bytes)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(seconds))


def _buffered(client: Any) -> bool:
    """Whether imaplib already holds unread server bytes (which select() cannot see)."""
    reader = getattr(client._imap, "file", None)
    if not isinstance(reader, io.BufferedReader):
        return False
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(reader.peek(1))
    except (OSError, ValueError):  # nothing there: EAGAIN, or SSLWantReadError
        return False
    finally:
        sock.settimeout(timeout)


def _shutdown(client: Any) -> None:
    with suppress(Exception):
        client.shutdown()
