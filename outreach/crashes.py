"""Steps that crash their worker: counted on their claim, run alone, then parked.

Dramatiq counts the retries of an actor that raised, but not the redeliveries of a message
whose worker died (SIGKILL, out of memory, a segfault in a C library): such a message would
come back forever. So a worker counts its own starts. Before running claimed steps it adds
one to each step's `starts` on its claim, in a transaction of its own; a worker that
finishes sets it back to zero. A count left above zero means the worker running the step
died (or the step raised an error nobody expected). Such a step is a suspect: it runs alone,
so it can take no innocent step down with it, and once its worker has died
`max_crashes` times on it the step is parked: the enrollment is paused with the reason, a
`paused` event says so, and `outreach doctor` lists it until a person resumes it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from outreach import claims as claim_rows
from outreach import enrollment as enrollments
from outreach import ledger
from outreach.app import App
from outreach.db import transaction
from outreach.errors import OutreachError
from outreach.models import DispatchClaim, Enrollment, EnrollmentState, SendStatus

Claim = tuple[int, int]
PARKED = "parked"  # the reason's first word, for listings
log = logging.getLogger("outreach.crashes")

_C = DispatchClaim.__table__  # type: ignore[attr-defined]
_MATCH = sa.tuple_(_C.c.enrollment_id, _C.c.step).in_(sa.bindparam("claims", expanding=True))
START = (
    sa.update(_C)
    .where(_MATCH)
    .values(starts=_C.c.starts + 1)
    .returning(_C.c.enrollment_id, _C.c.step, _C.c.starts)
)
UNDO = sa.update(_C).where(_MATCH, _C.c.starts > 0).values(starts=_C.c.starts - 1)
FINISH = sa.update(_C).where(_MATCH, _C.c.starts > 0).values(starts=0)


@dataclass
class Triage:
    """What to do with a delivery's steps: run them together, run each alone, or park."""

    run: list[Claim] = field(default_factory=list)
    alone: list[Claim] = field(default_factory=list)
    parked: list[tuple[Claim, int]] = field(default_factory=list)  # with its crash count


def triage(app: App, claims: list[Claim], now: datetime, *, single: bool = False) -> Triage:
    """Count this start of every claimed step and sort the steps by their earlier crashes.

    A step not claimed (a retry or a resend by hand) is not counted and just runs. In a
    `single` delivery a suspect runs, since it is alone already.
    """
    result = Triage()
    if not claims:
        return result
    with app.engine.begin() as connection:
        counted = {
            (row.enrollment_id, row.step): row.starts
            for row in connection.execute(START, {"claims": [tuple(c) for c in claims]})
        }
    for claim in claims:
        crashes = counted.get(claim, 1) - 1
        if crashes >= app.settings.max_crashes:
            result.parked.append((claim, crashes))
        elif crashes and not single and len(claims) > 1:
            result.alone.append(claim)
        else:
            result.run.append(claim)
    if result.alone:
        with app.engine.begin() as connection:  # not run here: this start does not count
            connection.execute(UNDO, {"claims": result.alone})
    if result.parked:
        park(app, result.parked, now)
    return result


def finish(app: App, claims: list[Claim]) -> None:
    """The worker came back from these steps: forget their crashes."""
    if claims:
        with app.engine.begin() as connection:
            connection.execute(FINISH, {"claims": claims})


@contextmanager
def finishing(app: App, claims: list[Claim]) -> Iterator[set[Claim]]:
    """Run steps; unless they raise an error nobody expected, forget their crashes after.

    The body adds to the set it is given the steps whose crashes it forgot already (a sent
    step's are forgotten in the statement that records it): one write fewer per batch.

    Our own errors (a refusal to retry later, bad input) and the database going away are
    expected ends. Any other error is counted like a crash, so a step that raises one every
    time is parked too instead of coming back each time its claim runs out.
    """
    done: set[Claim] = set()
    try:
        yield done
    except (OutreachError, sa.exc.OperationalError):
        with suppress(sa.exc.SQLAlchemyError):  # the database may be the thing that is down
            finish(app, [claim for claim in claims if claim not in done])
        raise
    finish(app, [claim for claim in claims if claim not in done])


def park(app: App, parked: list[tuple[Claim, int]], now: datetime) -> None:
    """Pause each enrollment whose step keeps killing its worker, saying so."""
    for (enrollment_id, step), crashes in parked:
        reason = (
            f"{PARKED}: step {step} stopped its worker {crashes} times without finishing; "
            "resume to try it again"
        )
        with transaction(app.engine) as session:
            enrollment = session.get(Enrollment, enrollment_id, with_for_update=True)
            if enrollment is None or enrollment.state != EnrollmentState.ACTIVE:
                continue
            if enrollment.step != step:
                continue
            enrollments.pause(session, enrollment, reason, now)
            claim_rows.release(session, enrollment_id)
            _settle_send(session, enrollment_id, step)
        log.error("enrollment %s step %s parked after %d crashes", enrollment_id, step, crashes)


def _settle_send(session: Session, enrollment_id: int, step: int) -> None:
    """A send the dying worker left 'sending': unknown if it was handed over, else not sent."""
    send = ledger.find(session, enrollment_id, step)
    if send is None or send.status != SendStatus.SENDING:
        return
    if send.handed:
        send.status, send.error = SendStatus.UNKNOWN, "cut off: its worker died"
    else:
        send.status, send.error = SendStatus.DEFERRED, "not sent: its worker died before"


def jitter(app: App) -> int:
    """A random delay, in ms, for a step sent on alone: suspects spread out in time, so a
    poison message is unlikely to take the same innocent step down with it again and again."""
    return random.randint(0, int(min(app.settings.dispatch_lease_seconds / 2, 30) * 1000))


def parked(app: App) -> list[Enrollment]:
    """The enrollments paused because a step kept killing its worker."""
    with transaction(app.engine) as session:
        query = sa.select(Enrollment).where(
            col(Enrollment.state) == EnrollmentState.PAUSED,
            col(Enrollment.reason).startswith(f"{PARKED}:"),
        )
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows
