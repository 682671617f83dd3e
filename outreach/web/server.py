"""The FastAPI application: one per process, over the same App the CLI and workers use."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from outreach.actors import Actors
from outreach.app import App
from outreach.errors import InputError, UnknownCall, UnknownProspect, UnknownSequence
from outreach.web import api, metrics, pages, tracking, unsubscribe
from outreach.web.auth import bearer

_FOLDER = re.compile(r" in /\S*")


def create_app(app: App, actors: Actors | None = None) -> FastAPI:
    """The HTTP service over `app`; `actors` hands inbound mail to the workers."""
    web = FastAPI(
        title="outreach",
        summary="Sales sequences as code: the API for reps and other systems.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    web.state.outreach = app
    web.state.actors = actors
    web.include_router(api.router)
    web.include_router(tracking.router)
    web.include_router(unsubscribe.router)
    web.include_router(pages.router)
    web.add_exception_handler(InputError, _refused)  # type: ignore[arg-type]
    web.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]

    @web.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """The database and the broker both answer."""
        checks = {"database": _database(app), "broker": _broker(actors)}
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(checks, status_code=200 if healthy else 503)

    @web.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        dependencies=[Depends(bearer)],
    )
    def prometheus() -> PlainTextResponse:
        """Queue and send counters in the Prometheus text format."""
        body, content_type = metrics.exposition(app, actors)
        return PlainTextResponse(body, media_type=content_type)

    return web


def _refused(request: Request, exc: InputError) -> JSONResponse:
    status = 404 if isinstance(exc, (UnknownSequence, UnknownProspect, UnknownCall)) else 400
    # the server's folders are nobody's business over HTTP
    message = _FOLDER.sub("", str(exc))
    return JSONResponse({"error": message}, status_code=status)


def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Say which fields are wrong without echoing the input back (it may not even be text)."""
    problems = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"error": "the request is not valid", "problems": problems}, 422)


def _database(app: App) -> str:
    try:
        with app.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _broker(actors: Actors | None) -> str:
    if actors is None:
        return "ok"
    client: Any = getattr(actors.broker, "client", None)
    if client is None:
        return "ok"  # the in-process broker lives in this process
    try:
        client.ping()
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"
