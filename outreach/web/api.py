"""The JSON API under /api/: the same service functions and refusals as the CLI.

Every route but the inbound webhook needs a bearer token (or a logged-in browser's
session). A refused input answers 4xx with `{"error": ...}`; where some items went
through and some were refused (enroll, import), the answer is 422 and lists both,
so nothing valid is lost and nothing refused goes unnoticed.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from outreach import calls, reports, service
from outreach import prospect as prospects
from outreach.actors import Actors
from outreach.app import App
from outreach.clock import parse_now
from outreach.db import transaction
from outreach.inbound.ingest import process, receive
from outreach.web.auth import bearer, shared_secret_ok

router = APIRouter(prefix="/api", tags=["api"])
Guarded = Depends(bearer)
NowQuery = Annotated[
    str | None, Query(description="ISO-8601 time with Z or an offset; default: the clock")
]


def _app(request: Request) -> App:
    return request.app.state.outreach  # type: ignore[no-any-return]


def _now(value: str | None) -> datetime:
    return parse_now(value)


class EnrollRequest(BaseModel):
    """Who to enroll in which sequence."""

    sequence: str
    emails: list[str] = Field(min_length=1)
    owner: str | None = None


class CallDone(BaseModel):
    """How a call went."""

    outcome: calls.CallOutcome
    handoff: str | None = None
    at: str | None = Field(default=None, description="callback time, ISO-8601")


class Scope(BaseModel):
    """Optionally, one sequence only."""

    sequence: str | None = None


class Address(BaseModel):
    """An email address."""

    email: str


def _partial(body: dict[str, Any], refused: list[Any]) -> JSONResponse:
    if refused:
        return JSONResponse({"error": f"{len(refused)} refused", **body}, status_code=422)
    return JSONResponse(body)


@router.post("/enroll", dependencies=[Guarded])
def enroll(request: Request, body: EnrollRequest, now: NowQuery = None) -> JSONResponse:
    """Enroll prospects; each refusal (active, exclusive, suppressed, invalid) says why."""
    report = service.enroll_many(_app(request), body.sequence, body.emails, _now(now), body.owner)
    refused = [{"email": who, "reason": why} for who, why in report.refused]
    return _partial({"enrolled": report.enrolled, "refused": refused}, refused)


@router.post("/import", dependencies=[Guarded])
async def import_csv(request: Request, now: NowQuery = None) -> JSONResponse:
    """Upsert prospects from a CSV body (text/csv); bad rows are reported by line."""
    data = await request.body()
    when = _now(now)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.csv"
        path.write_bytes(data)
        report = prospects.import_csv(_app(request).engine, path, when)
    refused = [{"line": line, "reason": why} for line, why in report.refused]
    warnings = [{"line": line, "warning": why} for line, why in report.warnings]
    return _partial(
        {"imported": report.imported, "refused": refused, "warnings": warnings}, refused
    )


@router.get("/prospects/{email}", dependencies=[Guarded])
def prospect(request: Request, email: str) -> dict[str, Any]:
    """The prospect, their enrollments and timeline (the shape of `outreach prospect --json`)."""
    app = _app(request)
    with transaction(app.engine) as session:
        return reports.prospect_view(session, app.versions, email)


@router.get("/calls", dependencies=[Guarded])
def call_queue(request: Request, owner: str | None = None) -> list[dict[str, Any]]:
    """The call queue, most engaged first (the shape of `outreach calls --json`)."""
    with transaction(_app(request).engine) as session:
        return calls.queue(session, owner)


@router.post("/calls/{task_id}/done", dependencies=[Guarded])
def call_done(
    request: Request, task_id: int, body: CallDone, now: NowQuery = None
) -> dict[str, Any]:
    """Record a call: a meeting ends the sequence as booked; a callback re-queues it."""
    when = _now(now)
    callback = parse_now(body.at) if body.at else None
    with transaction(_app(request).engine) as session:
        task = calls.complete(
            session, task_id, body.outcome, when, handoff=body.handoff, callback_at=callback
        )
        return {"id": task.id, "status": task.status, "outcome": str(body.outcome)}


@router.get("/stats", dependencies=[Guarded])
def stats(request: Request, sequence: str | None = None) -> list[dict[str, Any]]:
    """Per step and variant: sent, opened, clicked, replied, bounced, unsubscribed, meetings."""
    with transaction(_app(request).engine) as session:
        return reports.stats(session, sequence)


def _manual(action: Any) -> Any:
    def route(
        request: Request, email: str, body: Scope | None = None, now: NowQuery = None
    ) -> dict[str, Any]:
        count = action(_app(request), email, _now(now), body.sequence if body else None)
        return {"email": email, "enrollments": count}

    route.__doc__ = action.__doc__
    return route


for _verb, _action in (
    ("pause", service.pause),
    ("resume", service.resume),
    ("stop", service.stop),
):
    router.add_api_route(
        f"/prospects/{{email}}/{_verb}",
        _manual(_action),
        methods=["POST"],
        dependencies=[Guarded],
        name=_verb,
    )


@router.post("/unsubscribe", dependencies=[Guarded])
def unsubscribe(request: Request, body: Address, now: NowQuery = None) -> dict[str, Any]:
    """Suppress an address and end every enrollment it has."""
    ended = service.unsubscribe(_app(request), body.email, _now(now))
    return {"email": body.email, "ended": ended}


# --- inbound mail ----------------------------------------------------------------------

_FORM_FIELDS = ("email", "body-mime", "message", "raw", "mime")


@router.post("/inbound", status_code=202)
async def inbound(request: Request, now: NowQuery = None) -> JSONResponse:
    """Raw MIME from an inbound-mail webhook (or a form post carrying it), kept, then handled.

    The shared secret (OUTREACH_INBOUND_SECRET) comes in the `X-Outreach-Secret` header or
    the `secret` query parameter. The same message delivered twice is handled once.
    """
    app = _app(request)
    given = request.headers.get("x-outreach-secret") or request.query_params.get("secret")
    if not shared_secret_ok(app, given):
        raise HTTPException(403, "wrong or missing inbound secret")
    raw = await _body(request, app.settings.inbound_max_bytes)
    if not raw.strip():
        raise HTTPException(400, "the body holds no message")
    inbound_id, seen = receive(app, raw, _now(now), source="webhook")
    if not seen:
        actors: Actors | None = request.app.state.actors
        if actors is None:
            process(app, inbound_id, _now(now))
        else:
            actors.process_inbound.send(inbound_id, _now(now).isoformat() if now else None)
    return JSONResponse({"id": inbound_id, "duplicate": seen}, status_code=200 if seen else 202)


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the message is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the message is larger than {limit} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _from_form(request, data)
    return data


async def _from_form(request: Request, data: bytes) -> bytes:
    """The raw message a provider's form post carries in one of its usual fields."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request as Replay

    async def receive_again() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    limit = request.app.state.outreach.settings.inbound_max_bytes
    form = await Replay(request.scope, receive_again).form(max_part_size=limit)
    for name in _FORM_FIELDS:
        value = form.get(name)
        if isinstance(value, UploadFile):
            return await value.read()
        if isinstance(value, str) and value:
            return value.encode("utf-8", "surrogateescape")
    raise HTTPException(400, f"no message in the form: expected one of {', '.join(_FORM_FIELDS)}")
