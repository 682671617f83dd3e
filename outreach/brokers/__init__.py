"""Brokers, made in a function: Redis in production, in-process for one machine."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from outreach.errors import InputError


def make_broker(url: str | None) -> dramatiq.Broker:
    """Dramatiq's RedisBroker for `redis://…`, a StubBroker run in-process when unset."""
    if not url:
        broker: dramatiq.Broker = StubBroker()
        broker.emit_after("process_boot")
        return broker
    if url.startswith(("redis://", "rediss://", "unix://")):
        from outreach.brokers.redis import BatchRedisBroker

        return BatchRedisBroker(url=url)
    if url.startswith(("amqp://", "amqps://")):
        raise InputError("OUTREACH_BROKER_URL: RabbitMQ is not supported yet; use redis://")
    raise InputError(f"OUTREACH_BROKER_URL: unknown broker {url!r}; use redis://host:6379/0")


def is_in_process(broker: dramatiq.Broker) -> bool:
    """True for the in-process broker, where `tick` waits for the work it enqueued."""
    return isinstance(broker, StubBroker)
