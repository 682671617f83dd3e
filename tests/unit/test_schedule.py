"""Sending windows, waits, business days, holidays and DST, with `now` always passed in."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from outreach.schedule import (
    Schedule,
    Wait,
    Window,
    add_wait,
    due_at,
    is_holiday,
    is_open,
    next_opening,
    parse_wait,
    parse_window,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")
WEEKDAYS = frozenset(range(5))
EVERY_DAY = frozenset(range(7))


def schedule(
    window: str = "09:00-17:00",
    days: frozenset[int] = WEEKDAYS,
    holidays: str | None = None,
    timezone: str = "Europe/Stockholm",
) -> Schedule:
    return Schedule(timezone=timezone, window=parse_window(window), days=days, holidays=holidays)


def local(tz: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=tz)  # type: ignore[misc]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def wait(text: str) -> Wait:
    return parse_wait(text)


# --- parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("30 minutes", 30, "minutes"),
        ("1 minute", 1, "minutes"),
        ("3 hours", 3, "hours"),
        ("1 day", 1, "days"),
        ("2 days", 2, "days"),
        ("2 business days", 2, "business_days"),
        ("1 business day", 1, "business_days"),
        ("0 days", 0, "days"),
        ("  2  Business Days ", 2, "business_days"),
    ],
)
def test_parse_wait_accepts_what_authors_write(text: str, amount: int, unit: str) -> None:
    assert parse_wait(text) == Wait(amount=amount, unit=unit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-1 days", "cannot be negative"),
        ("1.5 days", "whole number"),
        ("3 weeks", "whole number and a unit"),
        ("days", "whole number"),
        ("", "bad duration"),
    ],
)
def test_parse_wait_refuses_with_a_clear_message(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_wait(text)


def test_wait_reads_back_as_written() -> None:
    assert str(parse_wait("1 business day")) == "1 business day"
    assert str(parse_wait("2 business days")) == "2 business days"


def test_parse_window() -> None:
    assert parse_window("09:00-17:00") == Window(start=540, end=1020)
    assert parse_window("00:00-24:00") == Window(start=0, end=1440)
    assert str(parse_window("08:30-16:30")) == "08:30-16:30"


@pytest.mark.parametrize("text", ["9-17", "09:00", "09:60-17:00", "24:30-25:00", "nine to five"])
def test_parse_window_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="bad window"):
        parse_window(text)


def test_parse_window_refuses_windows_across_midnight() -> None:
    with pytest.raises(ValueError, match="across midnight"):
        parse_window("22:00-06:00")
    with pytest.raises(ValueError, match="before the end"):
        parse_window("09:00-09:00")


def test_schedule_round_trips_through_json() -> None:
    original = schedule(holidays="SE")
    dumped = original.model_dump(mode="json")
    assert dumped["days"] == [0, 1, 2, 3, 4]
    assert Schedule.model_validate(dumped) == original


def test_zone_prefers_a_valid_prospect_timezone() -> None:
    s = schedule()
    assert s.zone("America/New_York") == NEW_YORK
    assert s.zone("Mars/Olympus_Mons") == STOCKHOLM
    assert s.zone("") == STOCKHOLM
    assert s.zone(None) == STOCKHOLM


# --- holidays ------------------------------------------------------------------


def test_holidays() -> None:
    assert is_holiday(date(2025, 6, 20), "SE")  # Midsummer Eve: a de facto day off
    assert is_holiday(date(2025, 12, 24), "SE")  # Christmas Eve
    assert is_holiday(date(2025, 7, 4), "US")
    assert is_holiday(date(2025, 3, 31), "US-CA")  # Cesar Chavez Day, California only
    assert not is_holiday(date(2025, 3, 31), "US")
    assert not is_holiday(date(2025, 6, 20), None)
    assert not is_holiday(date(2025, 6, 18), "SE")


# --- the window ----------------------------------------------------------------


def test_window_start_is_inclusive_and_end_exclusive() -> None:
    s = schedule()
    assert is_open(local(STOCKHOLM, 2025, 1, 13, 9, 0), s, STOCKHOLM)
    assert is_open(local(STOCKHOLM, 2025, 1, 13, 16, 59, 59), s, STOCKHOLM)
    assert not is_open(local(STOCKHOLM, 2025, 1, 13, 17, 0), s, STOCKHOLM)
    assert not is_open(local(STOCKHOLM, 2025, 1, 13, 8, 59), s, STOCKHOLM)


def test_window_is_read_in_the_given_timezone() -> None:
    s = schedule()  # 10:00 in New York is 16:00 in Stockholm, 16:00 New York is 22:00
    assert is_open(local(NEW_YORK, 2025, 1, 13, 16, 0), s, NEW_YORK)
    assert not is_open(local(NEW_YORK, 2025, 1, 13, 16, 0), s, STOCKHOLM)


def test_open_time_is_returned_as_is_in_utc() -> None:
    t = local(STOCKHOLM, 2025, 1, 13, 10, 0)
    assert next_opening(t, schedule(), STOCKHOLM) == utc(2025, 1, 13, 9, 0)


def test_weekend_moves_to_monday_morning() -> None:
    saturday = local(STOCKHOLM, 2025, 1, 11, 12, 0)
    assert next_opening(saturday, schedule(), STOCKHOLM) == utc(2025, 1, 13, 8, 0)


def test_after_hours_moves_to_next_morning() -> None:
    tuesday_evening = local(NEW_YORK, 2025, 1, 14, 16, 30)
    s = schedule("08:30-16:30", timezone="America/New_York")
    assert next_opening(tuesday_evening, s, NEW_YORK) == utc(2025, 1, 15, 13, 30)


def test_step_found_overdue_outside_the_window_moves_to_next_opening() -> None:
    s = schedule(holidays="SE")
    due = local(STOCKHOLM, 2025, 1, 10, 16, 55)  # Friday, due inside the window...
    now = local(STOCKHOLM, 2025, 1, 10, 23, 40)  # ...but the scheduler only saw it at night
    assert next_opening(due, s, STOCKHOLM) == due.astimezone(UTC)
    assert next_opening(now, s, STOCKHOLM) == utc(2025, 1, 13, 8, 0)


def test_holiday_is_skipped_by_the_window() -> None:
    christmas_eve = local(STOCKHOLM, 2025, 12, 24, 10, 0)
    s = schedule(holidays="SE")
    assert not is_open(christmas_eve, s, STOCKHOLM)
    # 25th, 26th are holidays, 27th-28th the weekend: Monday the 29th, 09:00 CET.
    assert next_opening(christmas_eve, s, STOCKHOLM) == utc(2025, 12, 29, 8, 0)


def test_whole_day_window_is_always_open() -> None:
    s = schedule("00:00-24:00", days=EVERY_DAY)
    for t in (
        local(STOCKHOLM, 2025, 1, 11, 0, 0),
        local(STOCKHOLM, 2025, 1, 11, 23, 59, 59),
        local(STOCKHOLM, 2025, 3, 30, 2, 30),  # does not exist locally: still open
        utc(2025, 10, 26, 0, 30),  # the repeated hour in Stockholm
    ):
        assert is_open(t, s, STOCKHOLM)
        assert next_opening(t, s, STOCKHOLM) == t.astimezone(UTC)


def test_half_hour_offset_kolkata() -> None:
    s = schedule(timezone="Asia/Kolkata")
    assert next_opening(utc(2025, 1, 6, 3, 0), s, KOLKATA) == utc(2025, 1, 6, 3, 30)
    assert is_open(utc(2025, 1, 6, 11, 29), s, KOLKATA)  # 16:59 IST
    assert next_opening(utc(2025, 1, 6, 11, 30), s, KOLKATA) == utc(2025, 1, 7, 3, 30)


def test_schedule_that_never_opens_raises() -> None:
    with pytest.raises(ValueError, match="schedule never opens"):
        next_opening(utc(2025, 1, 1), schedule(days=frozenset()), STOCKHOLM)


# --- DST -----------------------------------------------------------------------


def test_window_start_inside_the_spring_forward_gap_opens_at_the_jump() -> None:
    # Stockholm, 30 March 2025: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    s = schedule("02:30-05:00", days=EVERY_DAY)
    assert next_opening(utc(2025, 3, 30, 0, 0), s, STOCKHOLM) == utc(2025, 3, 30, 1, 0)
    assert next_opening(utc(2025, 3, 29, 0, 0), s, STOCKHOLM) == utc(2025, 3, 29, 1, 30)
    assert next_opening(utc(2025, 3, 31, 0, 0), s, STOCKHOLM) == utc(2025, 3, 31, 0, 30)


def test_sydney_spring_forward_gap() -> None:
    # Sydney, 5 October 2025: 02:00 AEST jumps to 03:00 AEDT (16:00 UTC on the 4th).
    s = schedule("02:30-05:00", days=EVERY_DAY, timezone="Australia/Sydney")
    assert next_opening(utc(2025, 10, 4, 15, 0), s, SYDNEY) == utc(2025, 10, 4, 16, 0)


def test_window_reopens_in_the_repeated_hour() -> None:
    # Stockholm, 26 October 2025: 03:00 CEST falls back to 02:00 CET (01:00 UTC).
    s = schedule("01:30-02:30", days=EVERY_DAY)
    assert next_opening(utc(2025, 10, 25, 23, 0), s, STOCKHOLM) == utc(2025, 10, 25, 23, 30)
    assert next_opening(utc(2025, 10, 26, 0, 40), s, STOCKHOLM) == utc(2025, 10, 26, 1, 0)


@pytest.mark.parametrize(
    ("tz", "start", "expected"),
    [
        (STOCKHOLM, (2025, 3, 29, 10, 0), utc(2025, 3, 30, 8, 0)),  # CET -> CEST
        (STOCKHOLM, (2025, 10, 25, 10, 0), utc(2025, 10, 26, 9, 0)),  # CEST -> CET
        (NEW_YORK, (2025, 3, 8, 10, 0), utc(2025, 3, 9, 14, 0)),  # EST -> EDT
        (NEW_YORK, (2025, 11, 1, 10, 0), utc(2025, 11, 2, 15, 0)),  # EDT -> EST
        (SYDNEY, (2025, 4, 5, 10, 0), utc(2025, 4, 6, 0, 0)),  # AEDT -> AEST
        (SYDNEY, (2025, 10, 4, 10, 0), utc(2025, 10, 4, 23, 0)),  # AEST -> AEDT
    ],
)
def test_one_day_wait_keeps_local_wall_time_across_dst(
    tz: ZoneInfo, start: tuple[int, ...], expected: datetime
) -> None:
    s = schedule("00:00-24:00", days=EVERY_DAY)
    sent = local(tz, *start)
    assert add_wait(sent, wait("1 day"), s, tz) == expected
    assert expected.astimezone(tz).hour == 10
    assert due_at(sent, [wait("1 day")], s, tz) == expected


def test_hours_and_minutes_are_absolute_across_dst() -> None:
    s = schedule(days=EVERY_DAY)
    before = utc(2025, 3, 30, 0, 30)  # 01:30 CET
    assert add_wait(before, wait("60 minutes"), s, STOCKHOLM) == utc(2025, 3, 30, 1, 30)
    assert add_wait(before, wait("24 hours"), s, STOCKHOLM) == utc(2025, 3, 31, 0, 30)


# --- business days -------------------------------------------------------------


def test_friday_1659_plus_one_business_day_is_monday() -> None:
    s = schedule(holidays="SE")
    friday = local(STOCKHOLM, 2025, 1, 10, 16, 59)
    monday = utc(2025, 1, 13, 15, 59)
    assert add_wait(friday, wait("1 business day"), s, STOCKHOLM) == monday
    assert due_at(friday, [wait("1 business day")], s, STOCKHOLM) == monday


def test_business_days_skip_swedish_midsummer_eve() -> None:
    s = schedule(holidays="SE")
    thursday = local(STOCKHOLM, 2025, 6, 19, 10, 0)
    assert due_at(thursday, [wait("1 business day")], s, STOCKHOLM) == utc(2025, 6, 23, 8, 0)


def test_business_days_skip_swedish_christmas() -> None:
    s = schedule(holidays="SE")
    monday = local(STOCKHOLM, 2025, 12, 22, 11, 0)
    # Tuesday the 23rd, then the 24th-26th are holidays and the 27th-28th the weekend.
    assert due_at(monday, [wait("2 business days")], s, STOCKHOLM) == utc(2025, 12, 29, 10, 0)


def test_business_days_without_holidays_only_skip_weekends() -> None:
    s = schedule()
    monday = local(STOCKHOLM, 2025, 12, 22, 11, 0)
    assert due_at(monday, [wait("2 business days")], s, STOCKHOLM) == utc(2025, 12, 24, 10, 0)


def test_business_days_across_us_dst_and_thanksgiving() -> None:
    s = schedule("08:30-16:30", holidays="US", timezone="America/New_York")
    friday = local(NEW_YORK, 2025, 3, 7, 10, 0)  # EST
    assert due_at(friday, [wait("1 business day")], s, NEW_YORK) == utc(2025, 3, 10, 14, 0)
    wednesday = local(NEW_YORK, 2025, 11, 26, 9, 0)  # the 27th is Thanksgiving
    assert due_at(wednesday, [wait("1 business day")], s, NEW_YORK) == utc(2025, 11, 28, 14, 0)


def test_wait_landing_outside_the_window_moves_to_next_opening() -> None:
    s = schedule(holidays="SE")
    thursday = local(STOCKHOLM, 2025, 1, 9, 16, 0)
    # +2 hours is 18:00, after the window: Friday 09:00.
    assert due_at(thursday, [wait("2 hours")], s, STOCKHOLM) == utc(2025, 1, 10, 8, 0)


def test_due_at_applies_waits_in_order() -> None:
    s = schedule(holidays="SE")
    friday = local(STOCKHOLM, 2025, 1, 10, 14, 0)
    waits = [wait("2 hours"), wait("1 business day")]  # Friday 16:00, then Monday 16:00
    assert due_at(friday, waits, s, STOCKHOLM) == utc(2025, 1, 13, 15, 0)
    assert due_at(friday, [], s, STOCKHOLM) == utc(2025, 1, 10, 13, 0)


def test_zero_business_days_keeps_the_time() -> None:
    friday = local(STOCKHOLM, 2025, 1, 10, 14, 0)
    assert add_wait(friday, wait("0 business days"), schedule(), STOCKHOLM) == utc(2025, 1, 10, 13)


# --- naive datetimes -----------------------------------------------------------


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2025, 1, 13, 10, 0)
    s = schedule()
    with pytest.raises(ValueError, match="naive"):
        is_open(naive, s, STOCKHOLM)
    with pytest.raises(ValueError, match="naive"):
        next_opening(naive, s, STOCKHOLM)
    with pytest.raises(ValueError, match="naive"):
        add_wait(naive, wait("1 day"), s, STOCKHOLM)
    with pytest.raises(ValueError, match="naive"):
        due_at(naive, [], s, STOCKHOLM)
