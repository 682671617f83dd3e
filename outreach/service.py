"""Use cases shared by the CLI, the HTTP API and the demo; each takes `now` explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from outreach import enrollment as enrollments
from outreach import prospect as prospects
from outreach import tokens
from outreach.app import App
from outreach.compose import Composed, compose, render_note
from outreach.db import transaction
from outreach.errors import EnrollmentRefused, InputError, RenderError
from outreach.models import Enrollment, EnrollmentState, Prospect, Send, SendStatus
from outreach.schedule import due_at
from outreach.sequence import Sequence, Step
from outreach.suppression import is_suppressed, suppress


@dataclass
class EnrollReport:
    """Who was enrolled and who was refused, with the reason."""

    enrolled: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def enroll_many(
    app: App, sequence_id: str, emails: list[str], now: datetime, owner: str | None = None
) -> EnrollReport:
    """Enroll addresses one by one: each refusal is reported, the others go ahead."""
    sequence = app.sequence(sequence_id)
    report = EnrollReport()
    for email in emails:
        try:
            with transaction(app.engine) as session:
                person = prospects.ensure(session, email, now)
                enrollments.enroll(session, sequence, person, now, owner)
                report.enrolled.append(person.email)
        except (EnrollmentRefused, InputError) as exc:
            report.refused.append((email, str(exc)))
    return report


def _open_for(session: Session, email: str, sequence_id: str | None) -> list[Enrollment]:
    person = prospects.find(session, email)
    assert person.id is not None
    found = enrollments.open_enrollments(session, person.id, sequence_id)
    if not found:
        where = f" in {sequence_id}" if sequence_id else ""
        raise InputError(f"{person.email} has no active or paused enrollment{where}")
    return found


def pause(app: App, email: str, now: datetime, sequence_id: str | None = None) -> int:
    """Pause a prospect's active enrollments by hand."""
    with transaction(app.engine) as session:
        # an out-of-office pause becomes a pause by hand: no return date resumes it
        active = [
            e
            for e in _open_for(session, email, sequence_id)
            if e.state == EnrollmentState.ACTIVE or e.resume_at is not None
        ]
        for enrollment in active:
            enrollments.pause(session, enrollment, "paused by hand", now)
        return len(active)


def resume(app: App, email: str, now: datetime, sequence_id: str | None = None) -> int:
    """Resume a prospect's paused enrollments: due again at the window's next opening."""
    with transaction(app.engine) as session:
        paused = [
            e for e in _open_for(session, email, sequence_id) if e.state == EnrollmentState.PAUSED
        ]
        if not paused:
            raise InputError(f"{email} has no paused enrollment")
        for enrollment in paused:
            sequence = app.versions.load(session, enrollment.version_id)
            enrollments.resume(session, sequence, enrollment, now)
        return len(paused)


def stop(app: App, email: str, now: datetime, sequence_id: str | None = None) -> int:
    """Stop a prospect's open enrollments by hand."""
    with transaction(app.engine) as session:
        found = _open_for(session, email, sequence_id)
        for enrollment in found:
            enrollments.stop(session, enrollment, "stopped by hand", now)
        return len(found)


def unsubscribe(app: App, email: str, now: datetime, reason: str = "unsubscribed by hand") -> int:
    """Suppress an address (known or not) and end every enrollment it has."""
    with transaction(app.engine) as session:
        person = prospects.ensure(session, email, now)
        return suppress(session, person, reason, now)


def unsubscribe_by_token(app: App, token: str, now: datetime) -> str | None:
    """One-click unsubscribe from a signed link; the address, or None for a bad token."""
    payload = tokens.verify(token, app.secret)
    if not payload or not payload.startswith("u:"):
        return None
    try:
        _u, enrollment_id, step = payload.split(":")
        eid, number = int(enrollment_id), int(step)
    except ValueError:
        return None
    with transaction(app.engine) as session:
        enrollment = session.get(Enrollment, eid)
        if enrollment is None:
            return None
        person = session.get(Prospect, enrollment.prospect_id)
        assert person is not None
        if not is_suppressed(session, person.email):
            suppress(
                session,
                person,
                "unsubscribed: one-click link",
                now,
                enrollment=enrollment,
                step=number,
            )
        return person.email


def preview(app: App, sequence_id: str, email: str, now: datetime) -> list[dict[str, Any]]:
    """Every step as it would go out for this prospect if enrolled now, with its planned time."""
    sequence = app.sequence(sequence_id)
    with transaction(app.engine) as session:
        person = prospects.find(session, email)
    tz = sequence.schedule.zone(person.timezone)
    sender = sequence.sender.addresses[0]
    at = now
    earlier: list[Send] = []
    planned: list[dict[str, Any]] = []
    for step in sequence.steps:
        at = due_at(at, step.waits, sequence.schedule, tz)
        item: dict[str, Any] = {
            "step": step.number,
            "kind": step.kind,
            "at": at.isoformat(),
            "local_time": at.astimezone(tz).isoformat(),
        }
        if step.kind == "email":
            item.update(_preview_email(app, sequence, step, person, sender, earlier, at))
        else:
            item["note"] = render_note(app, sequence, step, person, sender) or ""
        planned.append(item)
    return planned


def compose_preview(
    app: App,
    sequence: Sequence,
    step: Step,
    template: str,
    person: Prospect,
    sender: str,
    earlier: list[Send],
    at: datetime,
) -> Composed:
    """One variant of a step as it would be sent, outside any enrollment (id 0)."""
    return compose(
        app,
        sequence=sequence,
        step=step,
        template=template,
        prospect=person,
        sender=sender,
        enrollment_id=0,
        earlier=earlier,
        now=at,
    )


def _preview_email(app, sequence, step, person, sender, earlier, at) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    results = []
    for template in step.templates:
        try:
            composed = compose_preview(app, sequence, step, template, person, sender, earlier, at)
        except RenderError as exc:
            results.append({"variant": template, "error": f"would pause: {exc}"})
            continue
        email = composed.email
        results.append(
            {
                "variant": template,
                "from": email.sender,
                "to": email.to_email,
                "subject": email.subject,
                "text": email.text,
                "html": email.html,
                "in_reply_to": email.in_reply_to,
            }
        )
    ok = next((r for r in results if "subject" in r), None)
    if ok is not None and not earlier:
        earlier.append(
            Send(
                step=step.number,
                subject=ok["subject"],
                message_id=f"<preview.{step.number}@x>",
                status=SendStatus.SENT,
                template=ok["variant"],
                to_email="",
                sender_email="",
                enrollment_id=0,
            )
        )
    return {"variants": results}
