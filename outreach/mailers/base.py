"""What every mailer offers, and the send errors that carry the server's answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from outreach.errors import (
    AmbiguousSendError,
    OutreachError,
    PermanentSendError,
    TransientSendError,
)


class Mailer(Protocol):
    """Hands finished messages to something that delivers them."""

    def send(
        self, envelope_from: str, recipients: Sequence[str], data: bytes, message_id: str
    ) -> str | None:
        """Send data; return the server's answer (often a queue id) if there is one."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


class AnsweredError(OutreachError):
    """A send error that keeps the server's reply code and text, if there were any."""

    def __init__(self, message: str, code: int | None = None, answer: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.answer = answer


class TransientMailError(AnsweredError, TransientSendError):
    """Not sent this time (4xx, timeout, refused connection); safe to retry."""


class PermanentMailError(AnsweredError, PermanentSendError):
    """Refused for good (5xx); retrying will not help."""


class AmbiguousMailError(AnsweredError, AmbiguousSendError):
    """The connection broke after the data was sent; it may have been delivered."""
