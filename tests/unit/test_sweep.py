"""A scheduler reads the due index from its start once a minute, from near its last
full pass in between; what the short passes skip, the next full pass finds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from outreach import service
from outreach.app import App
from outreach.claims import EPOCH, Claimer, Sweep
from tests.conftest import write_blast

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_a_full_pass_once_a_minute_and_short_ones_between() -> None:
    sweep = Sweep()
    assert sweep.since(T0) == EPOCH  # nothing read from the start yet
    sweep.done(T0, EPOCH)
    later = T0 + timedelta(seconds=30)
    assert sweep.since(later) == T0 - MINUTE
    sweep.done(later, T0 - MINUTE)  # a short pass does not move the mark
    assert sweep.since(T0 + timedelta(seconds=59)) == T0 - MINUTE
    assert sweep.since(T0 + MINUTE) == EPOCH
    assert sweep.since(T0 - timedelta(seconds=1)) == EPOCH  # the clock went back


def test_what_a_short_pass_skips_the_next_full_pass_claims(app: App, workdir: Path) -> None:
    write_blast(workdir)
    service.enroll_many(app, "blast", ["old@example.com"], T0 - timedelta(minutes=10))
    service.enroll_many(app, "blast", ["recent@example.com"], T0 - timedelta(seconds=30))
    lease = app.settings.dispatch_lease_seconds
    sweep = Sweep(full_at=T0)
    now = T0 + timedelta(seconds=20)
    short = Claimer(app.engine, now, lease, sweep.since(now)).next(10)
    assert len(short) == 1, "due within the margin: found by a short pass"
    full = Claimer(app.engine, now, lease, EPOCH).next(10)
    assert len(full) == 1 and full != short, "due long before: found by the full pass"
