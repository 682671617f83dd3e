"""The module `outreach worker` hands to Dramatiq's CLI: one App per worker process."""

from __future__ import annotations

import logging
import threading

import dramatiq

from outreach import logs
from outreach.actors import declare
from outreach.app import App, build_app
from outreach.brokers import make_broker
from outreach.settings import Settings

_lock = threading.Lock()
_app: App | None = None


def get_app() -> App:
    """The process's App, built on first use (after Dramatiq has forked)."""
    global _app
    with _lock:
        if _app is None:
            _app = build_app(Settings())
        return _app


def setup() -> dramatiq.Broker:
    """Make the broker from settings and declare the actors on it."""
    settings = Settings()
    broker = make_broker(settings.broker_url)
    dramatiq.set_broker(broker)
    declare(broker, get_app, min_backoff_ms=settings.retry_backoff_ms)
    return broker


logs.configure(logging.INFO)
broker = setup()
