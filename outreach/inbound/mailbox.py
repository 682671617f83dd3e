"""`outreach inbox`: the IMAP mailbox watched, each new message ingested, then marked.

A message is marked (flagged `$OutreachIngested`, or moved) only after its ingest has
committed; a crash between the two hands it over again after a restart, and the ingest's
own key makes that second copy change nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from outreach.app import App
from outreach.clock import utcnow
from outreach.inbound.imap import ImapSettings, Mailbox
from outreach.inbound.ingest import ingest


def watch(
    app: App,
    url: str,
    *,
    once: bool = False,
    should_stop: Callable[[], bool] | None = None,
    idle_seconds: float = 300.0,
) -> int:
    """Ingest what the mailbox holds and, unless `once`, what arrives; returns the count."""
    stop = threading.Event()
    where = ImapSettings.from_url(url).where

    def handle(raw: bytes) -> None:
        ingest(app, raw, utcnow(), source=f"imap:{where}")
        if should_stop is not None and should_stop():
            stop.set()

    watcher = None
    if should_stop is not None:
        watcher = threading.Thread(target=_relay, args=(should_stop, stop), daemon=True)
        watcher.start()
    try:
        with Mailbox(url) as mailbox:
            return mailbox.poll(handle, once=once, idle_seconds=idle_seconds, stop=stop)
    finally:
        stop.set()


def _relay(should_stop: Callable[[], bool], stop: threading.Event) -> None:
    """Turn a signal-set flag into the event the IDLE wait watches."""
    while not stop.is_set():
        if should_stop():
            stop.set()
            return
        stop.wait(0.2)
