"""Tracking routes: the open pixel and tracked links (see `outreach.tracking` for the design).

- `GET /t/o/<token>`: 200 with a 1x1 transparent GIF and `Cache-Control: no-store`;
- `GET /t/c/<token>`: 302 to the URL signed in the token, which is the link as rendered;
- a forged or altered token gets 404 and nothing is recorded (the pixel's 404 still carries
  the GIF, so an email sent before a key change shows no broken image);
- `HEAD` answers the same and records nothing: link checkers use it, people do not.

Neither route waits for the database: a verified hit goes to the app's `Recorder`, created
with the first hit, flushed when the app shuts down (this router's lifespan, merged into
the app's by `include_router`) and at interpreter exit. Tests flush with
`outreach.tracking.flush(app)`. The hit's address is the connection's peer as uvicorn
reports it; behind a proxy run uvicorn with `--proxy-headers --forwarded-allow-ips`.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from outreach import tracking
from outreach.clock import utcnow

_NO_STORE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}
_REDIRECT = {**_NO_STORE, "Referrer-Policy": "no-referrer"}
_created = threading.Lock()


@asynccontextmanager
async def _lifespan(web: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        found = getattr(web.state, "tracking_recorder", None)
        if found is not None:
            found.close()


router = APIRouter(tags=["tracking"], include_in_schema=False, lifespan=_lifespan)


def recorder(web: Any) -> tracking.Recorder:
    """The FastAPI app's recorder, made on first use."""
    state = web.state
    found: tracking.Recorder | None = getattr(state, "tracking_recorder", None)
    if found is None:
        with _created:
            found = getattr(state, "tracking_recorder", None)
            if found is None:
                found = tracking.Recorder(state.outreach)
                state.tracking_recorder = found
    return found


def _peer(request: Request) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None


@router.api_route("/t/o/{token}", methods=["GET", "HEAD"])
async def open_pixel(token: str, request: Request) -> Response:
    """The open pixel."""
    secret = request.app.state.outreach.secret
    agent = request.headers.get("user-agent")
    hit = tracking.open_hit(secret, token, agent, _peer(request), utcnow())
    if hit is None:
        return Response(tracking.PIXEL, 404, _NO_STORE, media_type="image/gif")
    if request.method == "GET":
        recorder(request.app).submit(hit)
    return Response(tracking.PIXEL, 200, _NO_STORE, media_type="image/gif")


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"])
async def click(token: str, request: Request) -> Response:
    """A tracked link: to the URL signed in the token."""
    secret = request.app.state.outreach.secret
    agent = request.headers.get("user-agent")
    hit = tracking.click_hit(secret, token, agent, _peer(request), utcnow())
    if hit is None or hit.url is None:
        return Response(b"unknown link", 404, _NO_STORE, media_type="text/plain")
    if request.method == "GET":
        recorder(request.app).submit(hit)
    return Response(status_code=302, headers={**_REDIRECT, "Location": tracking.location(hit.url)})
