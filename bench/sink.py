"""An SMTP sink in its own process that only counts what it receives."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from aiosmtpd.controller import Controller


class Counting:
    """aiosmtpd handler that counts messages into a shared integer."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 2.0.0 Ok: queued"


def _serve(port: int, counter: Any, ready: Any) -> None:
    controller = Controller(Counting(counter), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


class Sink:
    """Start with `Sink(port).start()`; read `.count`; `.stop()` ends the process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.counter = multiprocessing.Value("q", 0)
        ready = multiprocessing.Event()
        self.process = multiprocessing.Process(
            target=_serve, args=(port, self.counter, ready), daemon=True
        )
        self._ready = ready

    def start(self) -> Sink:
        self.process.start()
        self._ready.wait(10)
        return self

    @property
    def count(self) -> int:
        return int(self.counter.value)

    def reset(self) -> None:
        with self.counter.get_lock():
            self.counter.value = 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.join()
