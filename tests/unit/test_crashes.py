"""A step whose worker keeps dying is counted on its claim, run alone, then parked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import crashes, doctor, service
from outreach.app import App
from outreach.claims import claim_due, drop_expired_claims
from outreach.db import transaction
from outreach.errors import TransientSendError
from outreach.models import Enrollment, EnrollmentState, Event, EventType
from tests.conftest import write_blast

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def claimed(app: App, workdir: Path) -> list[tuple[int, int]]:
    """Three enrolled people, their first steps claimed by a scheduler pass."""
    write_blast(workdir)
    service.enroll_many(app, "blast", [f"c{i}@example.com" for i in range(3)], NOW)
    return claim_due(app.engine, NOW, 10, app.settings.dispatch_lease_seconds)


def crash(app: App, claims: list[tuple[int, int]], times: int) -> None:
    """Start the steps `times` times in a row, the worker dying each time."""
    for _ in range(times):
        crashes.triage(app, claims, NOW, single=True)


def state(app: App, enrollment_id: int) -> tuple[str, str | None]:
    with transaction(app.engine) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        assert enrollment is not None
        return str(enrollment.state), enrollment.reason


def test_a_first_start_runs_everything_together(app: App, claimed: list[tuple[int, int]]) -> None:
    sorted_out = crashes.triage(app, claimed, NOW)
    assert sorted_out.run == claimed
    assert not sorted_out.alone and not sorted_out.parked


def test_a_step_whose_worker_died_runs_alone_and_takes_no_one_down(
    app: App, claimed: list[tuple[int, int]]
) -> None:
    crash(app, claimed[:1], 1)
    sorted_out = crashes.triage(app, claimed, NOW)
    assert sorted_out.alone == claimed[:1]
    assert sorted_out.run == claimed[1:]
    # handed on, not run here: this delivery does not count against it
    again = crashes.triage(app, claimed[:1], NOW, single=True)
    assert again.run == claimed[:1]
    # that start died too (2 crashes); up to the limit it still runs, then it is parked
    crash(app, claimed[:1], app.settings.max_crashes - 3)
    assert crashes.triage(app, claimed[:1], NOW, single=True).run == claimed[:1]
    assert crashes.triage(app, claimed[:1], NOW, single=True).parked


def test_a_step_that_kills_its_worker_every_time_is_parked_and_listed(
    app: App, claimed: list[tuple[int, int]]
) -> None:
    poison = claimed[0]
    crash(app, [poison], app.settings.max_crashes)
    sorted_out = crashes.triage(app, claimed, NOW)
    assert sorted_out.parked == [(poison, app.settings.max_crashes)]
    assert sorted_out.run == claimed[1:]
    status, reason = state(app, poison[0])
    assert status == EnrollmentState.PAUSED
    assert reason is not None and reason.startswith("parked: step 1 stopped its worker 5 times")
    assert [e.id for e in crashes.parked(app)] == [poison[0]]
    with transaction(app.engine) as session:
        events = session.scalars(sa.select(Event).where(Event.enrollment_id == poison[0]))
        assert EventType.PAUSED in [e.type for e in events]
    # resumed by a person, the step gets a fresh count
    service.resume(app, "c0@example.com", NOW)
    fresh = claim_due(app.engine, NOW + timedelta(minutes=1), 10, 600)
    assert poison in fresh
    assert crashes.triage(app, [poison], NOW, single=True).run == [poison]


def test_the_count_outlives_the_claim_running_out(app: App, claimed: list[tuple[int, int]]) -> None:
    lease = app.settings.dispatch_lease_seconds
    for n in range(1, app.settings.max_crashes + 1):
        later = NOW + timedelta(seconds=(lease + 1) * n)
        drop_expired_claims(app.engine, later)
        assert claimed[0] in claim_due(app.engine, later, 10, lease)
        assert crashes.triage(app, claimed[:1], later, single=True).run == claimed[:1]
    assert crashes.triage(app, claimed[:1], NOW, single=True).parked


def test_finishing_forgets_crashes_but_an_unexpected_error_counts_as_one(
    app: App, claimed: list[tuple[int, int]]
) -> None:
    step = claimed[:1]
    for _ in range(app.settings.max_crashes + 2):
        crashes.triage(app, step, NOW, single=True)
        with pytest.raises(TransientSendError), crashes.finishing(app, step):
            raise TransientSendError("451 try later")
    assert crashes.triage(app, step, NOW, single=True).run == step
    crashes.finish(app, step)
    for _ in range(app.settings.max_crashes):
        crashes.triage(app, step, NOW, single=True)
        with pytest.raises(RuntimeError), crashes.finishing(app, step):
            raise RuntimeError("a bug that fires every time")
    assert crashes.triage(app, step, NOW, single=True).parked


def test_a_step_without_a_claim_is_not_counted(app: App, claimed: list[tuple[int, int]]) -> None:
    unclaimed = [(claimed[0][0], 2)]
    for _ in range(app.settings.max_crashes + 1):
        assert crashes.triage(app, unclaimed, NOW, single=True).run == unclaimed


def test_doctor_reports_parked_enrollments(app: App, claimed: list[tuple[int, int]]) -> None:
    assert "parked" not in {c.check for c in doctor.run(app.settings)}
    crash(app, claimed[:1], app.settings.max_crashes + 1)
    parked = {c.check: c for c in doctor.run(app.settings)}["parked"]
    assert parked.status == "warning"
    assert "1 enrollments parked" in parked.message and "c0@example.com" in parked.message
    assert "outreach resume" in parked.hint


def test_recording_a_send_forgets_its_crashes(app: App, claimed: list[tuple[int, int]]) -> None:
    from outreach.batch import run_batch

    crash(app, claimed, 2)
    results = run_batch(app, claimed, NOW)
    assert [outcome.status for _claim, outcome in results] == ["sent"] * len(claimed)
    with app.engine.connect() as connection:
        starts = connection.scalars(sa.text("SELECT starts FROM dispatch_claim")).all()
    assert starts == [0] * len(claimed)


@pytest.mark.parametrize(("handed", "status"), [(False, "deferred"), (True, "unknown")])
def test_parking_settles_the_send_its_dying_worker_left(
    app: App, claimed: list[tuple[int, int]], handed: bool, status: str
) -> None:
    from outreach import ledger
    from outreach.dispatch import Prepared, prepare

    poison = claimed[0]
    prepared = prepare(app, poison[0], poison[1], NOW)  # reserved, then the worker dies
    assert isinstance(prepared, Prepared)
    if handed:
        assert ledger.hand(app.engine, [prepared.send_id])
    crash(app, [poison], app.settings.max_crashes + 1)
    with app.engine.connect() as connection:
        left = connection.execute(sa.text("SELECT status, error FROM send")).one()
    assert left.status == status and "worker died" in left.error
