"""A real uvicorn server on a loopback port, serving outreach's FastAPI app, for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from outreach.actors import Actors
from outreach.app import App
from outreach.web.server import create_app
from tests.conftest_smtp import free_port

TOKEN = "test-token-1"


@contextmanager
def serving(app: App, actors: Actors | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 and a free port; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(app, actors), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    with httpx.Client(timeout=1) as probe:
        while time.monotonic() < deadline and not server.started:
            time.sleep(0.02)
        while time.monotonic() < deadline:
            try:
                probe.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)
