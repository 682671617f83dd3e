"""A mailer that writes each message to a folder instead of sending it."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from outreach.mailers.base import TransientMailError

_UNSAFE = re.compile(r"[^A-Za-z0-9._+@-]+")


class OutboxMailer:
    """Writes one .eml file per message; the default when no SMTP server is set."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def send(
        self, envelope_from: str, recipients: Sequence[str], data: bytes, message_id: str
    ) -> str | None:
        """Write data to a new file atomically and return the file's name."""
        path = self.directory / eml_name(message_id, datetime.now(UTC))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, data)
        except OSError as exc:
            raise TransientMailError(f"cannot write to the outbox {self.directory}: {exc}") from exc
        return path.name

    def close(self) -> None:
        """Nothing to release."""


def eml_name(message_id: str, now: datetime) -> str:
    """Return a file name that sorts by time and names the message."""
    safe = _UNSAFE.sub("_", message_id.strip("<>")).strip("._")[:120] or "message"
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}-{safe}.eml"


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (or a crash) never sees half a message: write aside, then rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
