"""The pages people use: the call queue, a prospect's timeline, funnels and previews.

Server-rendered Jinja with autoescaping and plain HTML forms: every page works without
JavaScript. A person logs in with one of the API tokens (OUTREACH_API_TOKENS); the
session cookie carries a signed fingerprint of that token, never the token itself, and
is HttpOnly, SameSite=Lax, and Secure when OUTREACH_BASE_URL is https. A page opened
without a valid session answers 303 to /login.

Every form that changes something carries a CSRF token: an HMAC of the session cookie
under the secret key, checked in constant time on the POST; a POST without it, or with
another session's, is refused with 403. The login form has its own double-submit token
(a random cookie that the form must repeat), so no other site can log a browser in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import defaultdict
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import jinja2
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import calls, reports, service
from outreach import prospect as prospects
from outreach.app import App
from outreach.clock import utcnow
from outreach.compose import compose
from outreach.db import transaction
from outreach.errors import InputError, RenderError, SequenceInvalid, UnknownSequence
from outreach.message import build_message
from outreach.models import CallTask, Enrollment, Prospect, Send, SendStatus
from outreach.schedule import due_at
from outreach.sequence import Sequence, Step, load_all
from outreach.web.auth import SESSION_COOKIE, known, session_ok, session_value

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).resolve().parent
LOGIN_COOKIE = "outreach_login"
STYLESHEET = HERE / "static" / "outreach.css"
PICK_LIMIT = 200  # prospects offered in the preview's select
SEARCH_LIMIT = 100

_HEADERS = {
    # the preview's HTML part inherits this policy inside its sandboxed frame
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https: http:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

EVENT_LABELS = {
    "enrolled": "Enrolled",
    "sent": "Email sent",
    "opened": "Opened",
    "clicked": "Clicked",
    "replied": "Replied",
    "auto_reply": "Auto-reply",
    "bounced": "Bounced",
    "complained": "Spam complaint",
    "unsubscribed": "Unsubscribed",
    "paused": "Paused",
    "resumed": "Resumed",
    "call_task": "Call task",
    "call_done": "Call done",
    "meeting_booked": "Meeting booked",
    "failed": "Failed",
}
# event fields shown elsewhere on the line, or of no use to a person
_HIDDEN_FIELDS = ("type", "at", "sequence", "step", "text", "inbound", "message_id")
OUTCOMES = (
    (calls.CallOutcome.MEETING, "Meeting"),
    (calls.CallOutcome.CALLBACK, "Callback tomorrow"),
    (calls.CallOutcome.NO_ANSWER, "No answer"),
    (calls.CallOutcome.NOT_INTERESTED, "Not interested"),
)
STATE_TONE = {
    "active": "good",
    "meeting_booked": "good",
    "replied": "good",
    "paused": "warn",
    "bounced": "bad",
    "unsubscribed": "bad",
    "failed": "bad",
}


# --- rendering ---------------------------------------------------------------


def _when(value: str | datetime | None) -> str:
    """A time as people read it: `2026-03-02 09:00 UTC`."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _local(value: datetime | None) -> str:
    """A time in its own zone: `2026-03-02 10:00 CET`."""
    return value.strftime("%Y-%m-%d %H:%M %Z") if value else ""


def _path_part(value: str) -> str:
    """A value quoted to be one segment of a path (an address may hold `/`, `?` or `#`)."""
    return quote(value, safe="@+")


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = _when
_env.filters["local"] = _local
_env.filters["segment"] = _path_part
_env.globals.update(
    percent=_percent,
    outcomes=OUTCOMES,
    state_tone=STATE_TONE,
)


def _app(request: Request) -> App:
    return request.app.state.outreach  # type: ignore[no-any-return]


def _page(
    request: Request,
    name: str,
    cookie: str | None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """A template rendered with what every page needs: the session's CSRF token and nav."""
    app = _app(request)
    body = _env.get_template(name).render(
        csrf=csrf_token(app, cookie) if cookie else "",
        logged_in=cookie is not None,
        path=request.url.path,
        **values,
    )
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _message(
    request: Request, cookie: str | None, status: int, title: str, text: str
) -> HTMLResponse:
    return _page(request, "message.html", cookie, status, title=title, text=text)


# --- sessions and CSRF -------------------------------------------------------


def csrf_token(app: App, cookie: str) -> str:
    """The form token of a session: an HMAC of its cookie under the secret key."""
    return hmac.new(app.secret.encode(), b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()


def _csrf_ok(app: App, cookie: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), csrf_token(app, cookie).encode())


def _https(app: App) -> bool:
    return app.settings.base_url.lower().startswith("https://")


def _local_path(target: str | None, default: str = "/calls") -> str:
    """`target` when it is a path on this site (no scheme, no host), else `default`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default


def logged_in(request: Request) -> str:
    """The dependency of every page: the session cookie, or a 303 to the login form."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None and session_ok(_app(request), cookie):
        return cookie
    query = ""
    if request.method == "GET" and request.url.path not in ("/", "/login"):
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = "?" + urlencode({"next": wanted})
    raise HTTPException(303, "log in first", headers={"Location": f"/login{query}"})


Login = Annotated[str, Depends(logged_in)]
CsrfField = Annotated[str, Form()]


def _refused(request: Request, cookie: str) -> HTMLResponse:
    return _message(
        request,
        cookie,
        403,
        "Refused",
        "This form is out of date or did not come from this site. Go back, reload the page "
        "and try again.",
    )


@router.get("/static/outreach.css")
def stylesheet() -> Response:
    """The pages' stylesheet."""
    return Response(
        STYLESHEET.read_bytes(),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("/")
def home() -> RedirectResponse:
    """The call queue is where reps start."""
    return RedirectResponse("/calls", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    """The login form: one field for an API token."""
    if session_ok(_app(request), request.cookies.get(SESSION_COOKIE)):
        return RedirectResponse(_local_path(next), status_code=303)
    return _login_page(request, _local_path(next), None, 200)


def _login_page(
    request: Request, target: str, error: str | None, status: int, fresh: bool = False
) -> HTMLResponse:
    # one nonce per browser, so two open login tabs both work
    nonce = (not fresh and request.cookies.get(LOGIN_COOKIE)) or secrets.token_urlsafe(24)
    response = _page(
        request, "login.html", None, status, next=target, error=error, login_csrf=nonce
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=_https(_app(request)),
        path="/login",
    )
    return response


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    login_csrf: CsrfField = "",
    next: Annotated[str, Form()] = "/calls",
) -> Response:
    """Check the token; a known one gets the session cookie and goes on to the queue."""
    app = _app(request)
    target = _local_path(next)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(login_csrf.encode(), expected.encode()):
        return _login_page(
            request, target, "The form expired; please log in again.", 403, fresh=True
        )
    if not token.strip() or not known(app, token.strip()):
        return _login_page(request, target, "This token is not accepted.", 401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(app, token.strip()),
        httponly=True,
        samesite="lax",
        secure=_https(app),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, cookie: Login, csrf: CsrfField = "") -> Response:
    """End the session in this browser."""
    if not _csrf_ok(_app(request), cookie, csrf):
        return _refused(request, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_https(_app(request))
    )
    return response


# --- the call queue ------------------------------------------------------------


@router.get("/calls", response_class=HTMLResponse)
def call_queue(request: Request, cookie: Login, owner: str = "") -> HTMLResponse:
    """The call queue, most engaged first, each row with its one-click outcome buttons."""
    app = _app(request)
    with transaction(app.engine) as session:
        rows = calls.queue(session, owner or None)
        owners = session.scalars(
            select(CallTask.owner)
            .where(CallTask.status == "open", col(CallTask.owner).is_not(None))
            .distinct()
            .order_by(col(CallTask.owner))
        ).all()
    notice, error = _done_notice(request)
    back = "/calls" + (f"?{urlencode({'owner': owner})}" if owner else "")
    return _page(
        request,
        "calls.html",
        cookie,
        rows=rows,
        owner=owner,
        owners=owners,
        notice=notice,
        error=error,
        back=back,
        now=utcnow(),
    )


def _with_query(target: str, **values: object) -> str:
    """`target` with these query values, replacing earlier notices."""
    parts = urlsplit(target)
    kept = [
        (k, v) for k, v in parse_qsl(parts.query) if k not in ("done", "outcome", "gone", *values)
    ]
    kept += [(k, str(v)) for k, v in values.items()]
    return f"{parts.path}?{urlencode(kept)}"


@router.post("/calls/{task_id}/done")
def call_done(
    request: Request,
    task_id: int,
    cookie: Login,
    csrf: CsrfField = "",
    outcome: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/calls",
) -> Response:
    """Record a call's outcome and go back to the queue (or the timeline it came from)."""
    app = _app(request)
    if not _csrf_ok(app, cookie, csrf):
        return _refused(request, cookie)
    try:
        chosen = calls.CallOutcome(outcome)
    except ValueError:
        return _message(request, cookie, 400, "Unknown outcome", f"No outcome {outcome!r}.")
    target = _local_path(back)
    try:
        with transaction(app.engine) as session:
            calls.complete(session, task_id, chosen, utcnow())
    except InputError:
        return RedirectResponse(_with_query(target, gone=task_id), status_code=303)
    return RedirectResponse(_with_query(target, done=task_id, outcome=str(chosen)), status_code=303)


# --- prospects -------------------------------------------------------------------


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@router.get("/prospects", response_class=HTMLResponse)
def prospect_search(request: Request, cookie: Login, q: str = "") -> HTMLResponse:
    """Prospects by address, name or company; the most engaged first."""
    app = _app(request)
    query = select(Prospect).order_by(col(Prospect.score).desc(), col(Prospect.email))
    text = q.strip()
    if text:
        pattern = _like(text)
        query = query.where(
            sa.or_(
                *(
                    sa.func.lower(column).like(pattern, escape="\\")
                    for column in (
                        col(Prospect.email),
                        col(Prospect.first_name),
                        col(Prospect.last_name),
                        col(Prospect.company),
                    )
                )
            )
        )
    with transaction(app.engine) as session:
        found = session.scalars(query.limit(SEARCH_LIMIT + 1)).all()
    return _page(
        request,
        "prospects.html",
        cookie,
        q=text,
        prospects=found[:SEARCH_LIMIT],
        more=len(found) > SEARCH_LIMIT,
    )


@router.get("/prospects/{email:path}", response_class=HTMLResponse)
def prospect_page(request: Request, email: str, cookie: Login) -> HTMLResponse:
    """A prospect's timeline: replies in full, auto-replies, bounces, calls; enrollments."""
    app = _app(request)
    try:
        with transaction(app.engine) as session:
            view = reports.prospect_view(session, app.versions, email)
            tasks = _open_tasks(session, view["email"])
    except InputError as exc:
        return _message(request, cookie, 404, "No such prospect", str(exc))
    return _page(
        request,
        "prospect.html",
        cookie,
        p=view,
        events=[_timeline_line(event) for event in view["events"]],
        tasks=tasks,
        back=f"/prospects/{_path_part(view['email'])}",
        flash=_done_notice(request),
    )


def _timeline_line(event: dict[str, Any]) -> dict[str, Any]:
    """One event as the timeline shows it: label, reply text in full, other fields as text."""
    details = [
        f"{key.replace('_', ' ')}: {value}"
        for key, value in sorted(event.items())
        if key not in _HIDDEN_FIELDS and key != "intent" and value not in (None, "")
    ]
    return {
        "type": event["type"],
        "label": EVENT_LABELS.get(event["type"], event["type"]),
        "at": event["at"],
        "sequence": event.get("sequence"),
        "step": event.get("step"),
        "intent": event.get("intent"),
        "text": event.get("text"),
        "details": details,
    }


def _open_tasks(session: Session, email: str) -> list[dict[str, Any]]:
    return [row for row in calls.queue(session) if row["email"] == email]


def _done_notice(request: Request) -> tuple[str | None, str | None]:
    """What the last outcome button did, from the query the redirect carries."""
    done, gone = request.query_params.get("done", ""), request.query_params.get("gone", "")
    if done.isdigit():
        labels = {str(value): label for value, label in OUTCOMES}
        label = labels.get(request.query_params.get("outcome", ""))
        return (f"Call {done} recorded: {label}." if label else f"Call {done} recorded."), None
    if gone.isdigit():
        return None, f"Call {gone} is no longer open: someone already recorded it."
    return None, None


# --- sequences and their funnels -----------------------------------------------------


def _sequences(app: App) -> tuple[dict[str, Sequence], list[str]]:
    return load_all(app.settings.sequences_dir, app.settings.templates_dir)


def _states(session: Session, sequence_id: str | None = None) -> dict[str, dict[str, int]]:
    query = select(Enrollment.sequence_id, Enrollment.state, sa.func.count()).group_by(
        col(Enrollment.sequence_id), col(Enrollment.state)
    )
    if sequence_id:
        query = query.where(Enrollment.sequence_id == sequence_id)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for sequence, state, count in session.execute(query):
        counts[sequence][str(state)] = count
    return counts


def _shape(sequence: Sequence) -> str:
    kinds = [step.kind for step in sequence.steps]
    parts = [
        f"{kinds.count(k)} {k}{'s' if kinds.count(k) > 1 else ''}" for k in dict.fromkeys(kinds)
    ]
    return ", ".join(parts)


@router.get("/sequences", response_class=HTMLResponse)
def sequence_list(request: Request, cookie: Login) -> HTMLResponse:
    """Every sequence in the folder (and any still in the database), with its totals."""
    app = _app(request)
    found, errors = _sequences(app)
    with transaction(app.engine) as session:
        states = _states(session)
        rows = reports.stats(session)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(reports.COUNTERS, 0))
    for row in rows:
        for counter in reports.COUNTERS:
            totals[row["sequence"]][counter] += row[counter]
    listed = []
    for sequence_id in sorted(set(found) | set(states) | set(totals)):
        sequence = found.get(sequence_id)
        listed.append(
            {
                "id": sequence_id,
                "name": sequence.name if sequence else None,
                "shape": _shape(sequence) if sequence else "",
                "active": states[sequence_id].get("active", 0),
                "paused": states[sequence_id].get("paused", 0),
                "enrolled": sum(states[sequence_id].values()),
                **totals[sequence_id],
            }
        )
    return _page(request, "sequences.html", cookie, sequences=listed, errors=errors)


@router.get("/sequences/{sequence_id}", response_class=HTMLResponse)
def sequence_page(request: Request, sequence_id: str, cookie: Login) -> HTMLResponse:
    """The funnel per step and variant: sent, opened, clicked, replied, bounced, ..."""
    app = _app(request)
    sequence: Sequence | None = None
    errors: list[str] = []
    try:
        sequence = app.sequence(sequence_id)
    except SequenceInvalid as exc:
        errors = list(exc.errors)
    except UnknownSequence:
        pass
    with transaction(app.engine) as session:
        rows = reports.stats(session, sequence_id)
        states = _states(session, sequence_id).get(sequence_id, {})
    if sequence is None and not errors and not rows and not states:
        return _message(request, cookie, 404, "No such sequence", f"No sequence {sequence_id!r}.")
    widest = max((row["sent"] for row in rows), default=0)
    steps = {step.number: step for step in sequence.steps} if sequence else {}
    return _page(
        request,
        "sequence.html",
        cookie,
        sequence_id=sequence_id,
        sequence=sequence,
        errors=errors,
        rows=rows,
        steps=steps,
        widest=widest,
        states=states,
        counters=reports.COUNTERS,
    )


# --- preview -----------------------------------------------------------------------


def sample_prospect() -> Prospect:
    """The built-in prospect a preview uses when none is picked."""
    return Prospect(
        email="alex.sample@example.com",
        first_name="Alex",
        last_name="Sample",
        company="Example Corp",
        title="Head of Sales",
        phone="+1 555 0100",
        timezone=None,
        fields={},
        score=0,
    )


def _choices(found: dict[str, Sequence]) -> list[dict[str, Any]]:
    """Every email step of every valid sequence, as the preview's select offers them."""
    return [
        {
            "value": f"{sequence.id}:{step.number}",
            "group": f"{sequence.name} ({sequence.id})",
            "label": f"{sequence.id} · step {step.number}: {' / '.join(step.templates)}",
        }
        for sequence in found.values()
        for step in sequence.steps
        if step.kind == "email"
    ]


def _chosen(
    found: dict[str, Sequence], step: str, template: str
) -> tuple[Sequence | None, int, str | None]:
    """The sequence and step to preview, from `step=SEQUENCE:N` or the first using `template`."""
    if step:
        sequence_id, _, number = step.rpartition(":")
        sequence = found.get(sequence_id)
        if sequence is None or not number.isdigit():
            return None, 0, f"No valid sequence step {step!r}."
        if not 1 <= int(number) <= len(sequence.steps):
            return None, 0, f"Sequence {sequence_id} has no step {number}."
        if sequence.step(int(number)).kind != "email":
            return None, 0, f"Step {number} of {sequence_id} is not an email."
        return sequence, int(number), None
    for sequence in found.values():
        for candidate in sequence.steps:
            if template and template in candidate.templates:
                return sequence, candidate.number, None
    if template:
        return None, 0, f"No sequence step uses the template {template!r}."
    first = next(
        ((s, st.number) for s in found.values() for st in s.steps if st.kind == "email"), None
    )
    return (first[0], first[1], None) if first else (None, 0, None)


def preview_step(
    app: App, sequence: Sequence, number: int, person: Prospect, now: datetime
) -> dict[str, Any]:
    """Step `number` for `person` if enrolled at `now`: each variant exactly as it would be
    sent (the message is built, footer and headers included, and read back), and its time."""
    tz = sequence.schedule.zone(person.timezone)
    sender = sequence.sender.addresses[0]
    at = now
    earlier: list[Send] = []
    for step in sequence.steps:
        at = due_at(at, step.waits, sequence.schedule, tz)
        if step.number == number:
            variants = [
                _variant(app, sequence, step, t, person, sender, earlier, at)
                for t in step.templates
            ]
            return {"at": at, "local_at": at.astimezone(tz), "variants": variants, "step": step}
        if step.kind == "email":
            _thread(app, sequence, step, person, sender, earlier, at)
    raise IndexError(f"sequence {sequence.id} has no step {number}")


def _thread(
    app: App,
    sequence: Sequence,
    step: Step,
    person: Prospect,
    sender: str,
    earlier: list[Send],
    at: datetime,
) -> None:
    """Note an earlier step's message, so that a threaded step answers it."""
    try:
        composed = compose(
            app,
            sequence=sequence,
            step=step,
            template=step.templates[0],
            prospect=person,
            sender=sender,
            enrollment_id=0,
            earlier=earlier,
            now=at,
        )
    except RenderError:
        return  # that step would pause; the preview goes on without it
    earlier.append(
        Send(
            step=step.number,
            subject=composed.email.subject,
            message_id=composed.email.message_id,
            status=SendStatus.SENT,
            template=composed.template,
            to_email=person.email,
            sender_email=composed.sender_email,
            enrollment_id=0,
        )
    )


def _variant(
    app: App,
    sequence: Sequence,
    step: Step,
    template: str,
    person: Prospect,
    sender: str,
    earlier: list[Send],
    at: datetime,
) -> dict[str, Any]:
    try:
        composed = service.compose_preview(
            app, sequence, step, template, person, sender, earlier, at
        )
    except RenderError as exc:
        return {"variant": template, "error": f"This email would not be sent: {exc}"}
    message = BytesParser(policy=policy.default).parsebytes(build_message(composed.email))
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return {
        "variant": template,
        "error": None,
        "headers": [
            (name, str(message[name]))
            for name in ("From", "To", "Reply-To", "Subject", "In-Reply-To")
            if message[name] is not None
        ],
        "subject": str(message["Subject"]),
        "text": text.get_content() if text is not None else "",  # type: ignore[attr-defined]
        "html": html.get_content() if html is not None else None,  # type: ignore[attr-defined]
    }


@router.get("/preview", response_class=HTMLResponse)
def preview_page(
    request: Request, cookie: Login, step: str = "", template: str = "", prospect: str = ""
) -> HTMLResponse:
    """A sequence step's email for a sample or picked prospect: subject, text and HTML."""
    app = _app(request)
    found, errors = _sequences(app)
    sequence, number, problem = _chosen(found, step.strip(), template.strip())
    person: Prospect | None = None
    with transaction(app.engine) as session:
        people = list(
            session.scalars(select(Prospect.email).order_by(col(Prospect.email)).limit(PICK_LIMIT))
        )
        if prospect.strip():
            try:
                person = prospects.find(session, prospect)
            except InputError as exc:
                problem = f"{exc}: showing the sample prospect instead."
    if person is not None and person.email not in people:
        people.insert(0, person.email)
    result = None
    if sequence is not None:
        result = preview_step(app, sequence, number, person or sample_prospect(), utcnow())
    return _page(
        request,
        "preview.html",
        cookie,
        choices=_choices(found),
        selected=f"{sequence.id}:{number}" if sequence else "",
        sequence=sequence,
        people=people,
        person=person.email if person else "",
        sample=sample_prospect(),
        result=result,
        problem=problem,
        errors=errors,
    )
