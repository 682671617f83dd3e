"""Scheduler passes: claim what is due and hand it to the workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from outreach.actors import Actors
from outreach.app import App
from outreach.brokers.redis import BatchRedisBroker
from outreach.claims import EPOCH, Claimer, Sweep, drop_expired_claims
from outreach.clock import utcnow
from outreach.db import transaction
from outreach.inbound.effects import wake_due
from outreach.inbound.ingest import waiting

INBOUND_LEASE = timedelta(minutes=10)  # a received message not handled by then is re-sent
MAX_PAUSE_SECONDS = 30.0  # the longest wait between passes while a service is down
log = logging.getLogger("outreach.scheduler")


def tick(
    app: App, actors: Actors, now: datetime, *, simulated: bool = False, since: datetime = EPOCH
) -> int:
    """One pass: every step due at `now` is claimed and enqueued; returns how many.

    A message lost on the way (a broker outage mid-pass) is not lost work: the claim's
    lease runs out and the next pass dispatches the step again. `since` skips what was due
    before it (see `claims.Sweep`).
    """
    options: dict[str, Any] = {"max_retries": 0} if simulated else {}
    stamp = now.isoformat() if simulated else None

    # a simulated `now` ahead of the clock must not drop claims that are still live
    drop_expired_claims(app.engine, min(now, utcnow()))
    wake_returning(app, now)
    requeue_inbound(app, actors, now)
    total = 0
    claimer = Claimer(app.engine, now, app.settings.dispatch_lease_seconds, since)
    while True:
        claimed = claimer.next(app.settings.batch_size)
        size = app.settings.send_batch_size
        batches = [claimed[i : i + size] for i in range(0, len(claimed), size)]
        enqueue(actors, [([list(c) for c in batch], stamp) for batch in batches], options)
        total += len(claimed)
        if len(claimed) < app.settings.batch_size:
            return total


def wake_returning(app: App, now: datetime) -> int:
    """Resume enrollments paused by an out-of-office answer whose return date has come."""
    total = 0
    while True:
        with transaction(app.engine) as session:
            count = wake_due(session, app.versions, now, app.settings.batch_size)
        total += count
        if count < app.settings.batch_size:
            return total


def requeue_inbound(app: App, actors: Actors, now: datetime) -> int:
    """Hand the workers again any webhook message whose broker message was lost."""
    stale = waiting(app, now, INBOUND_LEASE)
    for inbound_id in stale:
        actors.process_inbound.send(inbound_id)
    return len(stale)


def enqueue(actors: Actors, batch: list[tuple[Any, ...]], options: dict[str, Any]) -> None:
    """Enqueue send_steps messages, in one round trip where the broker can."""
    make = actors.send_steps.message_with_options
    messages = [make(args=args, **options) for args in batch]
    if isinstance(actors.broker, BatchRedisBroker):
        actors.broker.enqueue_many(messages)
        return
    for message in messages:
        actors.broker.enqueue(message)


def run_forever(
    app: App,
    actors: Actors,
    clock: Callable[[], datetime],
    after_tick: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Tick every few seconds until told to stop.

    A pass that fails (the broker or the database is down, restarting, unreachable) is
    logged and tried again after a pause: the scheduler outlives the outage, and nothing
    it claimed is lost, since a claim whose message never reached a worker runs out.
    """
    failures = 0
    sweep = Sweep()
    while not should_stop():
        now = clock()
        since = sweep.since(now)
        try:
            count = tick(app, actors, now, since=since)
        except Exception as exc:  # any pass may fail while a service is down
            failures += 1
            pause = min(app.settings.tick_seconds * failures, MAX_PAUSE_SECONDS)
            log.error("scheduler pass failed (%s); trying again in %.1f s", exc, pause)
            time.sleep(pause)
            continue
        failures = 0
        sweep.done(now, since)
        if after_tick:
            after_tick(count)
        if count == 0:
            time.sleep(app.settings.tick_seconds)
