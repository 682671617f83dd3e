"""Dramatiq's RedisBroker with a batch enqueue for scheduler passes."""

from __future__ import annotations

from uuid import uuid4

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis


class BatchRedisBroker(RedisBroker):
    """RedisBroker whose `enqueue_many` pipelines the dispatch script.

    A scheduler pass enqueues thousands of messages; one round trip each costs more than
    claiming them in the database, so they go out in one pipeline instead. Each message is
    enqueued exactly as `RedisBroker.enqueue` does it, middleware hooks included.
    """

    def enqueue_many(self, messages: list[dramatiq.Message]) -> None:  # type: ignore[type-arg]
        """Enqueue messages (no delay) in one pipelined round trip."""
        script = self.scripts["dispatch"]
        keys = [self.namespace]
        ready = [m.copy(options={"redis_message_id": str(uuid4())}) for m in messages]
        with self.client.pipeline(transaction=False) as pipe:
            for message in ready:
                self.emit_before("enqueue", message, None)
                args = [
                    "enqueue",
                    current_millis(),
                    message.queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    self._should_do_maintenance("enqueue"),
                    self._max_unpack_size(),
                    message.options["redis_message_id"],
                    message.encode(),
                ]
                script(keys=keys, args=args, client=pipe)
            pipe.execute()
        for message in ready:
            self.emit_after("enqueue", message, None)
