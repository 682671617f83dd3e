"""A batch of due steps: each keeps its own checks, and a batch delivered twice sends once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import service
from outreach.app import App
from outreach.batch import run_batch
from outreach.db import transaction
from outreach.dispatch import claim_due
from outreach.models import CallTask, Enrollment, EnrollmentState, Prospect, Suppression
from tests.conftest import write_sequence, write_template
from tests.unit.test_dispatch import outbox

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def mixed(app: App, workdir: Path) -> list[tuple[int, int]]:
    """Five enrollments due at once: normal, stopped, suppressed, missing data, call step."""
    write_template(workdir, "hello", "Hi {{ prospect.first_name }} at {{ prospect.company }}\n")
    common = (
        'schedule: {timezone: UTC, window: "00:00-24:00",'
        " days: [mon, tue, wed, thu, fri, sat, sun]}\n"
        'sender: {from: "Ann <ann@acme.example>", address: "Acme AB"}\n'
        "exclusive: false\n"
    )
    write_sequence(workdir, "mail", f"name: Mail\n{common}steps:\n  - email: {{template: hello}}\n")
    ring = "  - call: {note: 'Ring {{ prospect.first_name }}'}\n  - wait: 1 day\n"
    write_sequence(
        workdir, "ring", f"name: Ring\n{common}steps:\n{ring}  - email: {{template: hello}}\n"
    )
    with transaction(app.engine) as session:
        for name in ("ok", "stopped", "suppressed", "ring"):
            session.add(
                Prospect(
                    email=f"{name}@example.com",
                    first_name=name.title(),
                    company="Acme",
                    created_at=NOW,
                    updated_at=NOW,
                    fields={},
                )
            )
        session.add(
            Prospect(
                email="nocompany@example.com",
                first_name="No",
                created_at=NOW,
                updated_at=NOW,
                fields={},
            )
        )
    emails = ["ok", "stopped", "suppressed", "nocompany"]
    service.enroll_many(app, "mail", [f"{e}@example.com" for e in emails], NOW)
    service.enroll_many(app, "ring", ["ring@example.com"], NOW)
    claims = claim_due(app.engine, NOW, 10, 600)
    service.stop(app, "stopped@example.com", NOW)
    with transaction(app.engine) as session:
        session.add(Suppression(email="suppressed@example.com", reason="complaint", created_at=NOW))
    return claims


def states(app: App) -> dict[str, str]:
    with transaction(app.engine) as session:
        rows = session.execute(sa.select(Prospect.email, Enrollment.state).join(Enrollment))
        return {email.split("@")[0]: str(state) for email, state in rows}


def test_each_step_in_a_batch_keeps_its_own_checks(app: App, mixed: list[tuple[int, int]]) -> None:
    results = dict(run_batch(app, mixed, NOW))
    assert sorted(o.status for o in results.values()) == [
        "paused",
        "sent",
        "skipped",
        "skipped",
        "task",
    ]
    [message] = outbox(app)
    assert message["To"] == "Ok <ok@example.com>"
    assert states(app) == {
        "ok": EnrollmentState.FINISHED,
        "stopped": EnrollmentState.STOPPED,
        "suppressed": EnrollmentState.UNSUBSCRIBED,
        "nocompany": EnrollmentState.PAUSED,
        "ring": EnrollmentState.ACTIVE,
    }
    with transaction(app.engine) as session:
        [task] = session.scalars(sa.select(CallTask))
    assert task.note == "Ring Ring"


def test_a_batch_delivered_twice_sends_once(app: App, mixed: list[tuple[int, int]]) -> None:
    run_batch(app, mixed, NOW)
    again = dict(run_batch(app, mixed, NOW))
    assert {o.status for o in again.values()} == {"skipped"}
    assert len(outbox(app)) == 1
    with transaction(app.engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(CallTask)) == 1


class UnsubscribingMailer:
    """Delivers to the outbox, and while doing so the prospect `victim` unsubscribes."""

    def __init__(self, app: App, victim: str) -> None:
        self.app, self.victim, self.inner = app, victim, app.mailer

    def send(
        self, envelope_from: str, recipients: list[str], data: bytes, message_id: str
    ) -> str | None:
        answer = self.inner.send(envelope_from, recipients, data, message_id)
        if self.victim:
            service.unsubscribe(self.app, self.victim, NOW)
            self.victim = ""
        return answer

    def close(self) -> None:
        self.inner.close()


def test_an_unsubscribe_landing_mid_batch_wins(app: App, mixed: list[tuple[int, int]]) -> None:
    with transaction(app.engine) as session:
        session.add(
            Prospect(
                email="late@example.com",
                first_name="Late",
                company="Acme",
                created_at=NOW,
                updated_at=NOW,
                fields={},
            )
        )
    service.enroll_many(app, "mail", ["late@example.com"], NOW)
    claims = claim_due(app.engine, NOW, 10, 600)
    app.mailer = UnsubscribingMailer(app, "late@example.com")  # type: ignore[assignment]
    results = dict(
        run_batch(app, [c for c in mixed + claims if c[0] in (mixed[0][0], claims[0][0])], NOW)
    )
    assert sorted(o.status for o in results.values()) == ["sent", "skipped"]
    assert [m["To"] for m in outbox(app)] == ["Ok <ok@example.com>"]
    assert states(app)["late"] == EnrollmentState.UNSUBSCRIBED
    with transaction(app.engine) as session:
        from outreach.models import Send

        statuses = {s.to_email: str(s.status) for s in session.scalars(sa.select(Send))}
    assert statuses == {"ok@example.com": "sent", "late@example.com": "deferred"}


def test_an_address_that_cannot_be_sent_pauses_alone(
    app: App, mixed: list[tuple[int, int]]
) -> None:
    with transaction(app.engine) as session:
        session.add(
            Prospect(
                email="jörg@exämple.de",
                first_name="Jörg",
                company="Acme",
                created_at=NOW,
                updated_at=NOW,
                fields={},
            )
        )
    assert service.enroll_many(app, "mail", ["jörg@exämple.de"], NOW).enrolled
    claims = claim_due(app.engine, NOW, 10, 600)
    results = dict(run_batch(app, [mixed[0], *claims], NOW))
    assert sorted(o.status for o in results.values()) == ["paused", "sent"]
    assert [m["To"] for m in outbox(app)] == ["Ok <ok@example.com>"]
    with transaction(app.engine) as session:
        jorg = session.scalars(
            sa.select(Enrollment).join(Prospect).where(Prospect.email == "jörg@exämple.de")
        ).one()
    assert jorg.state == EnrollmentState.PAUSED and "cannot build the message" in (
        jorg.reason or ""
    )
