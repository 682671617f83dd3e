"""Wiring an App to a broker and, in-process, to a worker that runs beside the caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import dramatiq

from outreach.actors import QUEUE, Actors, declare
from outreach.app import App
from outreach.brokers import is_in_process, make_broker
from outreach.scheduler import tick

MAX_ROUNDS = 20


@dataclass
class Runtime:
    """An App with its broker, actors and, in-process, a running worker."""

    app: App
    actors: Actors
    worker: dramatiq.Worker | None = None

    @property
    def in_process(self) -> bool:
        """True when steps run in this process."""
        return self.worker is not None

    def tick(self, now: datetime, *, simulated: bool = False) -> int:
        """One scheduler pass; in-process, returns once the dispatched steps have run.

        In-process, steps that come due at once (a call step, then an email with no wait)
        run in the same pass, as a worker would pick them up seconds later.
        """
        total = 0
        for _ in range(MAX_ROUNDS if self.in_process else 1):
            count = tick(self.app, self.actors, now, simulated=simulated or self.in_process)
            total += count
            if not self.in_process or count == 0:
                break
            self.wait()
        return total

    def wait(self) -> None:
        """Wait until the in-process worker has run everything enqueued."""
        if self.worker is not None:
            self.actors.broker.join(QUEUE, fail_fast=False)  # type: ignore[call-arg]
            self.worker.join()

    def close(self) -> None:
        """Stop the worker and release connections."""
        if self.worker is not None:
            self.worker.stop()
        self.actors.broker.close()
        self.app.close()


def start(app: App, threads: int | None = None) -> Runtime:
    """Connect the App to its configured broker; in-process, start a worker too."""
    broker = make_broker(app.settings.broker_url)
    actors = declare(broker, lambda: app, min_backoff_ms=app.settings.retry_backoff_ms)
    runtime = Runtime(app=app, actors=actors)
    if is_in_process(broker):
        runtime.worker = dramatiq.Worker(
            broker, worker_threads=threads or app.settings.worker_threads, worker_timeout=100
        )
        runtime.worker.start()
    return runtime
