"""`outreach sends`: failed and unknown sends listed, and re-opened by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from outreach import ledger, sends, service
from outreach.app import App, build_app
from outreach.cli import cli
from outreach.db import transaction
from outreach.models import Enrollment, EnrollmentState, Event, Send, SendStatus
from tests.conftest import add_prospect, make_settings, outbox, run_ticks, write_blast
from tests.conftest_smtp import SmtpSink

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EVA = "eva@example.com"


def tick(app: App, now: datetime) -> None:
    run_ticks(app, now, threads=1)


def only_send(app: App) -> Send:
    with transaction(app.engine) as session:
        return session.scalars(sa.select(Send)).one()


def enrollment(app: App) -> Enrollment:
    with transaction(app.engine) as session:
        return session.scalars(sa.select(Enrollment)).one()


@pytest.fixture
def failed(app: App, workdir: Path) -> Iterator[Send]:
    """Eva's step 1 refused for good by an SMTP server answering 550 to her address."""
    sequence = write_blast(workdir, steps=2)
    add_prospect(app, EVA)
    assert service.enroll_many(app, sequence, [EVA], MONDAY_9).enrolled
    with SmtpSink() as sink:
        sink.refuse[EVA] = "550 5.1.1 No such user"
        smtp_app = build_app(make_settings(workdir, smtp_url=sink.url()))
        try:
            tick(smtp_app, MONDAY_9)
        finally:
            smtp_app.close()
    send = only_send(app)
    assert send.status == SendStatus.FAILED
    assert enrollment(app).state == EnrollmentState.FAILED
    yield send


def make_unknown(app: App, workdir: Path) -> Send:
    """Eva's step 1 reserved by a worker that died: the send becomes unknown."""
    from outreach.dispatch import Prepared, claim_due, prepare, run_step

    sequence = write_blast(workdir, steps=2)
    add_prospect(app, EVA)
    service.enroll_many(app, sequence, [EVA], MONDAY_9)
    [(enrollment_id, step)] = claim_due(app.engine, MONDAY_9, 10, 600)
    prepared = prepare(app, enrollment_id, step, MONDAY_9)
    assert isinstance(prepared, Prepared)
    ledger.hand(app.engine, [prepared.send_id])  # handed to SMTP, then cut off
    later = MONDAY_9 + timedelta(seconds=app.settings.send_inflight_seconds + 1)
    assert run_step(app, enrollment_id, step, later).status == "unknown"
    return only_send(app)


def test_failed_send_is_listed_with_its_code(app: App, failed: Send) -> None:
    with transaction(app.engine) as session:
        [row] = sends.listing(session)
        assert sends.listing(session, "unknown") == []
        assert sends.listing(session, sequence="other") == []
    assert row["id"] == failed.id
    assert (row["email"], row["sequence"], row["step"], row["status"]) == (
        EVA,
        "blast",
        1,
        "failed",
    )
    assert row["code"] == 550
    assert "No such user" in row["error"]


def test_retry_resends_exactly_once_on_the_next_tick(app: App, failed: Send) -> None:
    assert failed.id is not None
    later = MONDAY_9 + timedelta(hours=1)
    with transaction(app.engine) as session:
        reopened = sends.retry(session, failed.id, later)
    assert reopened.state == EnrollmentState.ACTIVE
    assert reopened.step == 1
    assert reopened.next_run_at == later
    assert outbox(app) == []
    tick(app, later)
    tick(app, later + timedelta(minutes=5))
    [message] = outbox(app)
    assert message["To"] == EVA
    send = only_send(app)
    assert send.status == SendStatus.SENT
    assert send.started_at == later
    current = enrollment(app)
    assert current.state == EnrollmentState.ACTIVE
    assert current.step == 2
    with transaction(app.engine) as session:
        resumed = session.scalars(sa.select(Event).where(Event.type == "resumed")).one()
    assert resumed.data["retry_of"] == failed.id
    assert resumed.data["previous_message_id"] == failed.message_id
    # a second retry finds nothing to retry
    with pytest.raises(sends.RetryRefused), transaction(app.engine) as session:
        sends.retry(session, failed.id, later)


def test_unknown_send_needs_yes_resend(app: App, workdir: Path) -> None:
    unknown = make_unknown(app, workdir)
    assert unknown.id is not None
    later = MONDAY_9 + timedelta(hours=1)
    with (
        pytest.raises(sends.RetryRefused, match="may have been delivered"),
        transaction(app.engine) as session,
    ):
        sends.retry(session, unknown.id, later)
    assert only_send(app).status == SendStatus.UNKNOWN
    assert enrollment(app).state == EnrollmentState.PAUSED
    with transaction(app.engine) as session:
        sends.retry(session, unknown.id, later, resend=True)
    tick(app, later)
    assert len(outbox(app)) == 1
    assert only_send(app).status == SendStatus.SENT


def test_suppressed_address_is_refused(app: App, failed: Send) -> None:
    assert failed.id is not None
    service.unsubscribe(app, EVA, MONDAY_9)
    with pytest.raises(sends.RetryRefused, match="suppressed"), transaction(app.engine) as session:
        sends.retry(session, failed.id, MONDAY_9)
    assert only_send(app).status == SendStatus.FAILED


def test_stopped_enrollment_is_refused(app: App, workdir: Path) -> None:
    unknown = make_unknown(app, workdir)
    assert unknown.id is not None
    service.stop(app, EVA, MONDAY_9)
    with pytest.raises(sends.RetryRefused, match="stopped"), transaction(app.engine) as session:
        sends.retry(session, unknown.id, MONDAY_9, resend=True)


# --- the command line --------------------------------------------------------


@pytest.fixture
def runner(app: App, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(workdir)
    settings = app.settings
    monkeypatch.setenv("OUTREACH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("OUTREACH_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("OUTREACH_SEQUENCES_DIR", str(settings.sequences_dir))
    monkeypatch.setenv("OUTREACH_TEMPLATES_DIR", str(settings.templates_dir))
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "test-secret")
    return CliRunner()


def test_cli_lists_and_retries(app: App, failed: Send, runner: CliRunner) -> None:
    result = runner.invoke(cli, ["sends", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["id"] == failed.id and row["status"] == "failed"
    table = runner.invoke(cli, ["sends", "--status", "failed"])
    assert table.exit_code == 0 and EVA in table.stdout
    later = "2026-03-02T10:00:00Z"
    result = runner.invoke(cli, ["sends", "retry", str(failed.id), "--now", later])
    assert result.exit_code == 0, result.output
    assert "re-opened" in result.stdout
    result = runner.invoke(cli, ["tick", "--now", later])
    assert result.exit_code == 0, result.output
    assert len(outbox(app)) == 1
    assert json.loads(runner.invoke(cli, ["sends", "--json"]).stdout) == []


def test_cli_unknown_needs_the_flag(app: App, workdir: Path, runner: CliRunner) -> None:
    unknown = make_unknown(app, workdir)
    later = "2026-03-02T10:00:00Z"
    result = runner.invoke(cli, ["sends", "retry", str(unknown.id), "--now", later])
    assert result.exit_code == 1
    assert "--yes-resend" in result.output
    result = runner.invoke(cli, ["sends", "retry", str(unknown.id), "--now", later, "--yes-resend"])
    assert result.exit_code == 0, result.output


def test_cli_refuses_a_suppressed_address(app: App, failed: Send, runner: CliRunner) -> None:
    service.unsubscribe(app, EVA, MONDAY_9)
    result = runner.invoke(cli, ["sends", "retry", str(failed.id)])
    assert result.exit_code == 1
    assert "suppressed" in result.output
