"""Mailers: SMTP in production, an outbox folder when no server is set."""

from __future__ import annotations

from pathlib import Path

from outreach.mailers.base import (
    AmbiguousMailError,
    AnsweredError,
    Mailer,
    PermanentMailError,
    TransientMailError,
)
from outreach.mailers.outbox import OutboxMailer
from outreach.mailers.smtp import SmtpMailer

__all__ = [
    "AmbiguousMailError",
    "AnsweredError",
    "Mailer",
    "OutboxMailer",
    "PermanentMailError",
    "SmtpMailer",
    "TransientMailError",
    "make_mailer",
]


def make_mailer(smtp_url: str | None, outbox_dir: Path, timeout: float = 30.0) -> Mailer:
    """Return an SMTP mailer when a URL is set, else one writing to the outbox folder."""
    if smtp_url:
        return SmtpMailer(smtp_url, timeout=timeout)
    return OutboxMailer(outbox_dir)
