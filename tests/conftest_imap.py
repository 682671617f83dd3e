"""A real Dovecot for tests, as started by .ci/dovecot: a fresh folder per test, APPEND to fill it.

The server is looked for on 127.0.0.1:10143 (IMAP, STARTTLS) and :10993 (IMAPS), user and
password "outreach". When it does not answer and `dovecot` is installed, .ci/dovecot is run
once to start it (it never installs anything from here); otherwise the tests skip, or fail
under CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.conftest import ROOT, require

__all__ = ["IMAP_HOST", "ImapBox", "dovecot", "imap_box"]

IMAP_HOST = "127.0.0.1"
IMAP_PORT = int(os.environ.get("OUTREACH_DOVECOT_PORT", "10143"))
IMAPS_PORT = int(os.environ.get("OUTREACH_DOVECOT_TLS_PORT", "10993"))
USER = PASSWORD = "outreach"
DOVECOT_DIR = Path(os.environ.get("OUTREACH_DOVECOT_DIR", "/tmp/outreach-dovecot"))


def greets(port: int = IMAP_PORT) -> None:
    """Raise unless an IMAP server greets us on the port."""
    with socket.create_connection((IMAP_HOST, port), timeout=3) as sock:
        greeting = sock.recv(200)
    if not greeting.startswith(b"* OK"):
        raise ConnectionError(f"no IMAP greeting on port {port}: {greeting[:60]!r}")


def greets_tls(port: int = IMAPS_PORT) -> None:
    """Raise unless an IMAP server greets us over TLS on the port (any certificate)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((IMAP_HOST, port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname=IMAP_HOST) as sock,
    ):
        greeting = sock.recv(200)
    if not greeting.startswith(b"* OK"):
        raise ConnectionError(f"no IMAP greeting over TLS on port {port}: {greeting[:60]!r}")


def start_if_installed() -> None:
    """Run .ci/dovecot when the port is closed and dovecot is installed (no install here)."""
    try:
        greets()
        return
    except OSError:
        pass
    if shutil.which("dovecot") or Path("/usr/sbin/dovecot").exists():
        subprocess.run([ROOT / ".ci" / "dovecot"], check=False, timeout=60, capture_output=True)


@contextmanager
def admin() -> Iterator[Any]:
    """A plain IMAP session as the test user, for setting up and looking."""
    client = IMAPClient(IMAP_HOST, IMAP_PORT, ssl=False, timeout=10)
    try:
        client.login(USER, PASSWORD)
        yield client
    finally:
        try:
            client.logout()
        except Exception:
            client.shutdown()


@dataclass
class ImapBox:
    """A fresh folder on the test server, and its move target."""

    folder: str
    processed: str

    def url(self, scheme: str = "imap", query: str = "insecure=1", password: str = PASSWORD) -> str:
        """The OUTREACH_IMAP_URL for this folder."""
        port = IMAPS_PORT if scheme == "imaps" else IMAP_PORT
        tail = f"?{query}" if query else ""
        return f"{scheme}://{USER}:{password}@{IMAP_HOST}:{port}/{self.folder}{tail}"

    def append(self, *messages: bytes) -> None:
        """Deliver messages with APPEND, from a connection of their own."""
        with admin() as client:
            for raw in messages:
                client.append(self.folder, raw)

    def flags(self, folder: str | None = None) -> dict[bytes, tuple[bytes, ...]]:
        """Message-ID -> flags for every message in the folder (default: ours)."""
        with admin() as client:
            client.select_folder(folder or self.folder, readonly=True)
            uids = client.search("ALL")
            found = client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        result: dict[bytes, tuple[bytes, ...]] = {}
        for data in found.values():
            header = data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].split(b":", 1)[1].strip()
            result[header] = tuple(data[b"FLAGS"])
        return result


@pytest.fixture(scope="session")
def dovecot() -> None:
    """The test Dovecot answers (skip locally, fail under CI=true, if it does not)."""
    start_if_installed()
    require(f"Dovecot on {IMAP_HOST}:{IMAP_PORT} (run .ci/dovecot)", greets)


@pytest.fixture
def imap_box(dovecot: None) -> Iterator[ImapBox]:
    """A new, empty folder per test, removed afterwards with its Processed folder."""
    tag = uuid.uuid4().hex[:10]
    box = ImapBox(folder=f"t_{tag}", processed=f"done_{tag}")
    with admin() as client:
        client.create_folder(box.folder)
    yield box
    with admin() as client:
        for folder in (box.folder, box.processed):
            if client.folder_exists(folder):
                client.delete_folder(folder)
