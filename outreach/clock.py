"""Time at the edges: parse `--now`, refuse naive datetimes."""

from __future__ import annotations

from datetime import UTC, datetime

from outreach.errors import InputError


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def parse_now(text: str | None) -> datetime:
    """Parse an ISO-8601 instant with `Z` or an offset; None means the clock."""
    if text is None:
        return utcnow()
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise InputError(f"--now: not an ISO-8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise InputError(f"--now: {text!r} has no timezone; add Z or an offset like +01:00")
    return value.astimezone(UTC)


def aware(value: datetime) -> datetime:
    """Return `value` in UTC; databases without timezone support hand back naive UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
