"""Scheduler passes: claim what is due and hand it to the workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from outreach.actors import Actors
from outreach.app import App
from outreach.dispatch import claim_due


def tick(app: App, actors: Actors, now: datetime, *, simulated: bool = False) -> int:
    """One pass: every step due at `now` is claimed and enqueued; returns how many."""
    total = 0
    options: dict[str, Any] = {"max_retries": 0} if simulated else {}
    while True:
        claimed = claim_due(
            app.engine, now, app.settings.batch_size, app.settings.dispatch_lease_seconds
        )
        for enrollment_id, step in claimed:
            args = (enrollment_id, step, now.isoformat() if simulated else None)
            actors.send_step.send_with_options(args=args, **options)  # type: ignore[arg-type]
        total += len(claimed)
        if len(claimed) < app.settings.batch_size:
            return total


def run_forever(
    app: App,
    actors: Actors,
    clock: Callable[[], datetime],
    after_tick: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Tick every few seconds until told to stop."""
    while not should_stop():
        count = tick(app, actors, clock())
        if after_tick:
            after_tick(count)
        if count == 0:
            time.sleep(app.settings.tick_seconds)
