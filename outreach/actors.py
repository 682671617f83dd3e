"""Dramatiq actors: thin adapters that hand ids to the domain functions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import dramatiq
import sqlalchemy.exc

from outreach.app import App
from outreach.clock import utcnow
from outreach.dispatch import run_step
from outreach.errors import InputError, PermanentError, RetryableError

QUEUE = "outreach"
log = logging.getLogger("outreach.actors")


@dataclass
class Actors:
    """The actors declared on one broker."""

    broker: dramatiq.Broker
    send_step: dramatiq.Actor  # type: ignore[type-arg]


def declare(broker: dramatiq.Broker, app: Callable[[], App], max_retries: int = 5) -> Actors:
    """Declare the actors on a broker; `app` builds or returns the process's App lazily."""

    def send_step(enrollment_id: int, step: int, now: str | None = None) -> None:
        when = datetime.fromisoformat(now) if now else utcnow()
        try:
            outcome = run_step(app(), enrollment_id, step, when)
        except sqlalchemy.exc.OperationalError as exc:
            raise RetryableError(f"database unavailable: {exc.orig}") from exc
        log.info(
            "step %s: %s %s",
            step,
            outcome.status,
            outcome.detail,
            extra={"enrollment_id": enrollment_id, "step": step},
        )

    actor = dramatiq.actor(  # type: ignore[call-overload]
        send_step,
        broker=broker,
        actor_name="send_step",
        queue_name=QUEUE,
        max_retries=max_retries,
        min_backoff=10_000,
        max_backoff=300_000,
        throws=(PermanentError, InputError),
    )
    return Actors(broker=broker, send_step=actor)
