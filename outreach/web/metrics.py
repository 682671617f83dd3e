"""Prometheus counters read from the database and the broker: queue, sends, inbound."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlmodel import col, select

from outreach.actors import QUEUE, Actors
from outreach.app import App
from outreach.models import Enrollment, InboundMessage, Send


class _Collector:
    def __init__(self, app: App, actors: Actors | None) -> None:
        self.app = app
        self.actors = actors

    def collect(self) -> Any:
        sends = GaugeMetricFamily(
            "outreach_sends", "Rows of the send ledger by status", labels=["status"]
        )
        enrollments = GaugeMetricFamily(
            "outreach_enrollments", "Enrollments by state", labels=["state"]
        )
        inbound = GaugeMetricFamily(
            "outreach_inbound_messages", "Inbound messages by status", labels=["status"]
        )
        with self.app.engine.connect() as connection:
            for family, column in (
                (sends, col(Send.status)),
                (enrollments, col(Enrollment.state)),
                (inbound, col(InboundMessage.status)),
            ):
                rows = connection.execute(select(column, sa.func.count()).group_by(column))
                for value, count in rows:
                    family.add_metric([str(value)], count)
        yield sends
        yield enrollments
        yield inbound
        queued = self._queued()
        if queued is not None:
            depth = GaugeMetricFamily("outreach_queue_messages", "Messages waiting in the broker")
            depth.add_metric([], queued)
            yield depth

    def _queued(self) -> int | None:
        if self.actors is None:
            return None
        client: Any = getattr(self.actors.broker, "client", None)
        if client is not None:
            try:
                namespace = getattr(self.actors.broker, "namespace", "dramatiq")
                return int(client.llen(f"{namespace}:{QUEUE}"))
            except Exception:
                return None
        queue = getattr(self.actors.broker, "queues", {}).get(QUEUE)
        return queue.qsize() if queue is not None else None


def exposition(app: App, actors: Actors | None) -> tuple[bytes, str]:
    """The metrics page body and its content type."""
    registry = CollectorRegistry()
    registry.register(_Collector(app, actors))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST
