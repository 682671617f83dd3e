"""Dramatiq actors: thin adapters that hand ids to the domain functions."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
import sqlalchemy as sa
import sqlalchemy.exc
from sqlmodel import col

from outreach import crashes, logs
from outreach.app import App
from outreach.batch import run_batch
from outreach.clock import utcnow
from outreach.dispatch import run_step
from outreach.errors import InputError, PermanentError, RetryableError
from outreach.inbound.ingest import process
from outreach.models import InboundMessage
from outreach.outcomes import Outcome

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


def _step_ids(enrollment_id: int, step: int, now: str | None = None) -> dict[str, Any]:
    return {"enrollment": enrollment_id, "step": step}


def _batch_ids(claims: list[list[int]], now: str | None = None) -> dict[str, Any]:
    return {"enrollments": [claim[0] for claim in claims]}


def _inbound_ids(inbound_id: int, now: str | None = None) -> dict[str, Any]:
    return {"inbound": inbound_id}


# each actor's log fields, from the arguments its messages carry
LOG_FIELDS: dict[str, Callable[..., dict[str, Any]]] = {
    "send_step": _step_ids,
    "send_steps": _batch_ids,
    "process_inbound": _inbound_ids,
}


class LogContext(dramatiq.Middleware):
    """Binds a message's actor, id and ids (enrollment, step, inbound) while it is processed.

    Outermost of the broker's middleware, so Dramatiq's own lines about the message (an
    unhandled exception, a retry) carry the ids as well as the actors' lines do.
    """

    def __init__(self) -> None:
        self._tokens = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        fields = LOG_FIELDS.get(message.actor_name)
        try:
            ids = fields(*message.args, **message.kwargs) if fields else {}
        except (TypeError, IndexError):  # arguments the actor itself will refuse
            ids = {}
        self._tokens.token = logs.push(
            actor=message.actor_name, message_id=message.message_id, **ids
        )

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        token, self._tokens.token = getattr(self._tokens, "token", None), None
        if token is not None:
            logs.pop(token)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.after_process_message(broker, message)


def _add_log_context(broker: dramatiq.Broker) -> None:
    if any(isinstance(m, LogContext) for m in broker.middleware):
        return
    first = type(broker.middleware[0]) if broker.middleware else None
    broker.add_middleware(LogContext(), before=first)


def _said(outcome: Outcome) -> str:
    return f"{outcome.status}: {outcome.detail}" if outcome.detail else outcome.status


def declare(
    broker: dramatiq.Broker,
    app: Callable[[], App],
    max_retries: int = 5,
    min_backoff_ms: int = MIN_BACKOFF_MS,
) -> Actors:
    """Declare the actors on a broker; `app` builds or returns the process's App lazily.

    Each actor binds its ids (see `outreach.logs`) for the whole call, and each step's
    outcome is logged at INFO with its enrollment, step and, when one exists, send id.
    """
    _add_log_context(broker)

    def send_step(enrollment_id: int, step: int, now: str | None = None) -> None:
        with logs.bind(actor="send_step", **_step_ids(enrollment_id, step)):
            claim = [(enrollment_id, step)]
            with _database_errors_retry():
                if not crashes.triage(app(), claim, _when(now), single=True).run:
                    return  # parked: it has killed its worker too often
                with crashes.finishing(app(), claim):
                    outcome = run_step(app(), enrollment_id, step, _when(now))
            with logs.bind(send=outcome.send_id):
                log.info("%s", _said(outcome))

    def send_steps(claims: list[list[int]], now: str | None = None) -> None:
        with logs.bind(actor="send_steps", **_batch_ids(claims)):
            with _database_errors_retry():
                sorted_out = crashes.triage(app(), [(c[0], c[1]) for c in claims], _when(now))
            for enrollment_id, step in sorted_out.alone:
                # its worker died last time: alone, it can take no other step down with it
                delay = crashes.jitter(app()) if now is None else None
                single.send_with_options(args=(enrollment_id, step, now), delay=delay)
            with _database_errors_retry(), crashes.finishing(app(), sorted_out.run) as done:
                results = run_batch(app(), sorted_out.run, _when(now))
                done.update(claim for claim, outcome in results if outcome.status == "sent")
            tally = Counter(outcome.status for _claim, outcome in results)
            log.info("batch of %d steps: %s", len(results), dict(tally))
            for (enrollment_id, step), outcome in results:
                ids = {"enrollment": enrollment_id, "step": step, "send": outcome.send_id}
                with logs.bind(enrollments=None, **ids):
                    log.info("%s", _said(outcome))
                    if outcome.status == "retry" and now is None:
                        # a refusal for one message retries that message alone, with backoff;
                        # in simulated time the scheduler retries it when the lease runs out
                        single.send_with_options(
                            args=(enrollment_id, step, now), delay=min_backoff_ms
                        )

    def process_inbound(inbound_id: int, now: str | None = None) -> None:
        with logs.bind(actor="process_inbound", **_inbound_ids(inbound_id)):
            with _database_errors_retry():
                result = process(app(), inbound_id, _when(now))
                enrollment = _enrollment_of(app(), inbound_id) if result and result.match else None
            if result is not None:
                with logs.bind(enrollment=enrollment):
                    log.info("%s %s", result.kind, result.status)

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


def _enrollment_of(app: App, inbound_id: int) -> int | None:
    """The enrollment an inbound message was matched to, for its log line."""
    query = sa.select(col(InboundMessage.enrollment_id)).where(col(InboundMessage.id) == inbound_id)
    with app.engine.connect() as connection:
        return connection.scalar(query)


class _database_errors_retry:
    """Turn a lost database connection into a retryable error for the Retries middleware."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, sqlalchemy.exc.OperationalError):
            raise RetryableError(f"database unavailable: {exc.orig}") from exc
