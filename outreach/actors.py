"""Dramatiq actors: thin adapters that hand ids to the domain functions."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
import sqlalchemy.exc

from outreach.app import App
from outreach.batch import run_batch
from outreach.clock import utcnow
from outreach.dispatch import run_step
from outreach.errors import InputError, PermanentError, RetryableError
from outreach.inbound.ingest import process

QUEUE = "outreach"
MIN_BACKOFF_MS = 10_000
log = logging.getLogger("outreach.actors")


@dataclass
class Actors:
    """The actors declared on one broker."""

    broker: dramatiq.Broker
    send_step: Any
    send_steps: Any
    process_inbound: Any


def _when(now: str | None) -> datetime:
    return datetime.fromisoformat(now) if now else utcnow()


def declare(
    broker: dramatiq.Broker,
    app: Callable[[], App],
    max_retries: int = 5,
    min_backoff_ms: int = MIN_BACKOFF_MS,
) -> Actors:
    """Declare the actors on a broker; `app` builds or returns the process's App lazily."""

    def send_step(enrollment_id: int, step: int, now: str | None = None) -> None:
        with _database_errors_retry():
            outcome = run_step(app(), enrollment_id, step, _when(now))
        log.info(
            "enrollment %s step %s: %s %s", enrollment_id, step, outcome.status, outcome.detail
        )

    def send_steps(claims: list[list[int]], now: str | None = None) -> None:
        with _database_errors_retry():
            results = run_batch(app(), [(c[0], c[1]) for c in claims], _when(now))
        tally = Counter(outcome.status for _claim, outcome in results)
        log.info("batch of %d steps: %s", len(results), dict(tally))
        for (enrollment_id, step), outcome in results:
            log.debug(
                "enrollment %s step %s: %s %s", enrollment_id, step, outcome.status, outcome.detail
            )
            if outcome.status == "retry" and now is None:
                # a refusal for one message retries that message alone, with backoff; in
                # simulated time the scheduler retries it when the lease runs out
                single.send_with_options(args=(enrollment_id, step, now), delay=min_backoff_ms)

    def process_inbound(inbound_id: int, now: str | None = None) -> None:
        with _database_errors_retry():
            result = process(app(), inbound_id, _when(now))
        if result is not None:
            log.info("inbound %s: %s %s", inbound_id, result.kind, result.status)

    options: dict[str, Any] = {
        "broker": broker,
        "queue_name": QUEUE,
        "max_retries": max_retries,
        "min_backoff": min_backoff_ms,
        "max_backoff": 300_000,
        "throws": (PermanentError, InputError),
    }
    single = dramatiq.actor(send_step, actor_name="send_step", **options)  # type: ignore[call-overload]
    batch = dramatiq.actor(send_steps, actor_name="send_steps", **options)  # type: ignore[call-overload]
    inbound = dramatiq.actor(process_inbound, actor_name="process_inbound", **options)  # type: ignore[call-overload]
    return Actors(broker=broker, send_step=single, send_steps=batch, process_inbound=inbound)


class _database_errors_retry:
    """Turn a lost database connection into a retryable error for the Retries middleware."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, sqlalchemy.exc.OperationalError):
            raise RetryableError(f"database unavailable: {exc.orig}") from exc
