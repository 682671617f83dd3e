"""When a step may go out: waits, sending windows, weekdays and public holidays.

Every function here is pure and takes timezone-aware datetimes only (a naive one is
refused with ValueError); instants are returned in UTC.

Business days are Monday to Friday, minus the public holidays of the schedule's
`holidays` country (plus its de facto days off where the `holidays` package knows
them, e.g. Swedish Midsummer Eve and Christmas Eve). The schedule's `days` do not
change what a business day is; they only decide when the window is open.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import BaseModel, Field, field_serializer, model_validator

WaitUnit = Literal["minutes", "hours", "days", "business_days"]

MAX_SEARCH_DAYS = 400
_HOLIDAY_CATEGORIES = ("public", "de_facto")
_WAIT_RE = re.compile(r"(?P<amount>[+-]?\d+)\s+(?P<unit>minutes?|hours?|days?|business\s+days?)")
_WINDOW_RE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


class Wait(BaseModel, frozen=True):
    """A pause between two steps, e.g. 2 business days."""

    amount: int = Field(ge=0)
    unit: WaitUnit

    def __str__(self) -> str:
        unit = self.unit.replace("_", " ")
        return f"{self.amount} {unit[:-1] if self.amount == 1 else unit}"


class Window(BaseModel, frozen=True):
    """The local time of day when sending is allowed, in minutes after midnight."""

    start: int
    end: int

    @model_validator(mode="after")
    def _check(self) -> Window:
        if not 0 <= self.start < self.end <= 1440:
            raise ValueError("window needs 0 <= start < end <= 1440 (minutes after midnight)")
        return self

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


class Schedule(BaseModel, frozen=True):
    """When a sequence may send: timezone, window, weekdays, holidays and limits."""

    timezone: str
    window: Window
    days: frozenset[int]
    holidays: str | None = None
    daily_limit: int | None = None
    hourly_limit: int | None = None

    @field_serializer("days")
    def _sorted_days(self, days: frozenset[int]) -> list[int]:
        return sorted(days)

    def zone(self, prospect_tz: str | None) -> ZoneInfo:
        """The prospect's zone when it is a valid IANA name, else the schedule's."""
        return valid_zone(prospect_tz) or ZoneInfo(self.timezone)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def valid_zone(name: str | None) -> ZoneInfo | None:
    """The ZoneInfo for an IANA name, or None when the name is missing or unknown."""
    if not name or not name.strip():
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def parse_wait(text: str) -> Wait:
    """Parse "30 minutes", "1 hour", "2 days", "3 business days" (0 allowed, never negative)."""
    match = _WAIT_RE.fullmatch(" ".join(str(text).split()).lower())
    if match is None:
        raise ValueError(
            f"bad duration {text!r}: write a whole number and a unit, "
            "e.g. '30 minutes', '3 hours', '2 days' or '2 business days'"
        )
    amount = int(match["amount"])
    if amount < 0:
        raise ValueError(f"bad duration {text!r}: a wait cannot be negative")
    unit = match["unit"].replace(" ", "_").rstrip("s") + "s"
    return Wait(amount=amount, unit=unit)  # type: ignore[arg-type]


def parse_window(text: str) -> Window:
    """Parse "09:00-17:00" (end may be "24:00"); windows across midnight are refused."""
    match = _WINDOW_RE.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"bad window {text!r}: write it as HH:MM-HH:MM, e.g. '09:00-17:00'")
    start = _minutes(int(match[1]), int(match[2]), text)
    end = _minutes(int(match[3]), int(match[4]), text)
    if start >= end:
        raise ValueError(
            f"bad window {text!r}: the start must be before the end "
            "(windows across midnight are not supported; use '00:00-24:00' for the whole day)"
        )
    return Window(start=start, end=end)


def _minutes(hour: int, minute: int, text: str) -> int:
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise ValueError(f"bad window {text!r}: {hour:02d}:{minute:02d} is not a time of day")
    return hour * 60 + minute


def check_country(country: str) -> None:
    """Raise ValueError unless `country` ("SE", "US", or "US-CA" style) is known to `holidays`."""
    _holidays_for(country, 2000)


def is_holiday(day: date, country: str | None) -> bool:
    """Whether `day` is a public (or de facto) holiday in `country`; False without a country."""
    return bool(country) and day in _holidays_for(country or "", day.year)


@lru_cache(maxsize=512)
def _holidays_for(country: str, year: int) -> holidays_lib.HolidayBase:
    code, _, subdiv = country.strip().upper().partition("-")
    try:
        cls = type(holidays_lib.country_holidays(code, subdiv=subdiv or None))
        categories = tuple(c for c in _HOLIDAY_CATEGORIES if c in cls.supported_categories)
        return holidays_lib.country_holidays(
            code, subdiv=subdiv or None, years=year, categories=categories
        )
    except (NotImplementedError, KeyError, ValueError) as exc:
        raise ValueError(f"unknown holiday country {country!r}: {exc}") from exc


def _require_aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()} refused: give a timezone")


def _day_allowed(day: date, schedule: Schedule) -> bool:
    return day.weekday() in schedule.days and not is_holiday(day, schedule.holidays)


def is_open(t: datetime, schedule: Schedule, tz: ZoneInfo) -> bool:
    """Whether `t` is inside the window (start inclusive, end exclusive) on an allowed day in tz."""
    _require_aware(t)
    local = t.astimezone(tz)
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    window = schedule.window
    inside = window.start * 60 <= seconds < window.end * 60
    return inside and _day_allowed(local.date(), schedule)


def next_opening(t: datetime, schedule: Schedule, tz: ZoneInfo) -> datetime:
    """`t` itself if open, else the earliest later open instant; in UTC, correct across DST."""
    _require_aware(t)
    if is_open(t, schedule, tz):
        return t.astimezone(UTC)
    day = t.astimezone(tz).date()
    for _ in range(MAX_SEARCH_DAYS):
        if _day_allowed(day, schedule):
            for candidate in _openings(day, schedule.window, tz):
                if candidate > t and is_open(candidate, schedule, tz):
                    return candidate
        day += timedelta(days=1)
    raise ValueError(f"schedule never opens (searched {MAX_SEARCH_DAYS} days after {t})")


def _openings(day: date, window: Window, tz: ZoneInfo) -> list[datetime]:
    """Every instant on `day` where the window may open: its start, and any DST jump."""
    start = datetime.combine(day, time()) + timedelta(minutes=window.start)
    found = {_to_utc(start, tz, 0), _to_utc(start, tz, 1)}
    found.update(_transitions(day, tz))
    return sorted(found)


def _to_utc(wall: datetime, tz: ZoneInfo, fold: int) -> datetime:
    return wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)


def _transitions(day: date, tz: ZoneInfo) -> list[datetime]:
    """The instant (to the second) the UTC offset changes during `day`, if it does."""
    low = _to_utc(datetime.combine(day, time()), tz, 0)
    high = low + timedelta(days=1, hours=1)
    if low.astimezone(tz).utcoffset() == high.astimezone(tz).utcoffset():
        return []
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        same = middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset()
        low, high = (middle, high) if same else (low, middle)
    return [high.replace(microsecond=0)]


def add_wait(t: datetime, wait: Wait, schedule: Schedule, tz: ZoneInfo) -> datetime:
    """`t` plus `wait` in UTC: minutes/hours are absolute, (business) days keep local wall time.

    A wall time that does not exist on the target day (a spring-forward gap) moves
    forward by the gap; an ambiguous one (fall back) takes its first occurrence.
    """
    _require_aware(t)
    if wait.unit in ("minutes", "hours"):
        return (t + timedelta(**{wait.unit: wait.amount})).astimezone(UTC)
    local = t.astimezone(tz)
    if wait.unit == "days":
        day = local.date() + timedelta(days=wait.amount)
    else:
        day = add_business_days(local.date(), wait.amount, schedule.holidays)
    return _to_utc(datetime.combine(day, local.time()), tz, 0)


def is_business_day(day: date, country: str | None) -> bool:
    """Monday to Friday and not a holiday in `country`."""
    return day.weekday() < 5 and not is_holiday(day, country)


def add_business_days(day: date, amount: int, country: str | None) -> date:
    """The date `amount` business days after `day` (the same date when amount is 0)."""
    for _ in range(amount):
        day += timedelta(days=1)
        while not is_business_day(day, country):
            day += timedelta(days=1)
    return day


def due_at(previous: datetime, waits: Sequence[Wait], schedule: Schedule, tz: ZoneInfo) -> datetime:
    """When the next step is due: each wait applied in order from `previous`, then the window."""
    t = previous
    for wait in waits:
        t = add_wait(t, wait, schedule, tz)
    return next_opening(t, schedule, tz)
