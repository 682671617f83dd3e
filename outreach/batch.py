"""Sending a batch of due steps, a group at a time: one locked load and reservation, one
record.

Each step keeps the promises it has when run alone: it is checked under its enrollment's
lock and reserved in the ledger before SMTP, so a batch redelivered or cut off sends nothing
twice; and a stop, reply or unsubscribe recorded before a message's SMTP began wins. On
PostgreSQL each group of steps, once reserved, holds its enrollments' row
locks from a last check until its sends are recorded, so such a change waits instead of
racing it; elsewhere each message is checked again just before SMTP. Steps the fast path
cannot take run one by one through `dispatch.run_step`.
"""

from __future__ import annotations

import time
from datetime import datetime

import sqlalchemy as sa

from outreach import dispatch, fastpath, ledger
from outreach.app import App
from outreach.db import is_postgres, transaction
from outreach.errors import TransientSendError
from outreach.fastpath import E, P, Prepared
from outreach.models import EnrollmentState, Suppression
from outreach.outcomes import RELEASE, Outcome, durably, record_sent, write_sent

Claim = tuple[int, int]
# the longest a batch keeps speaking SMTP; what is left is released for a later batch
LOCK_BUDGET_SECONDS = 20.0
# sends marked as handed to the server in one commit, ahead of their SMTP: of the group's
# reservations a killed worker had not reached, at most this many end up 'unknown'; the
# rest are sent later. In bench/send.py a commit per message cost 38% of the send rate,
# one per five about 20%.
HAND_AHEAD = 5

WANTED = (
    sa.select(E.c.id, E.c.step)
    .select_from(E.join(P, P.c.id == E.c.prospect_id))
    .where(
        E.c.id.in_(sa.bindparam("ids", expanding=True)),
        E.c.state == EnrollmentState.ACTIVE,
        ~sa.exists().where(Suppression.__table__.c.email == P.c.email),  # type: ignore[attr-defined]
    )
    .order_by(E.c.id)
    .with_for_update(of=E)
)


def run_batch(app: App, claims: list[Claim], now: datetime) -> list[tuple[Claim, Outcome]]:
    """Run every claimed step; a transient refusal comes back as a 'retry' outcome.

    Steps are reserved and recorded a group of OUTREACH_SEND_BATCH_SIZE at a time (the
    whole batch, as the scheduler makes them), so a worker killed mid-batch leaves at most
    that many reservations whose fate is unknown: a smaller size trades speed for fewer.
    """
    group = app.settings.send_batch_size
    send = _send_locked if is_postgres(app.engine) else _send_checked
    results: list[tuple[Claim, Outcome]] = []
    left: list[Claim] = []
    for start in range(0, len(claims), group):
        with transaction(app.engine) as session:
            ready, passed = fastpath.prepare_many(app, session, claims[start : start + group], now)
        attempted: set[int] = set()
        try:
            results += send(app, ready, now, attempted)
        except Exception:
            _release_unattempted(app, ready, attempted)
            raise
        left += passed
    for claim in left:
        results.append((claim, _run_one(app, claim, now)))
    return results


def _release_unattempted(app: App, ready: list[Prepared], attempted: set[int]) -> None:
    """After a failure mid-group, give back the reservations no SMTP was spoken for."""
    untouched = [
        {"sid": item.send_id, "why": "not sent: the batch broke off before it"}
        for item in ready
        if item.send_id not in attempted
    ]

    def release() -> None:
        with app.engine.begin() as connection:
            connection.execute(RELEASE, untouched)

    if untouched:
        durably(app, release, f"{len(untouched)} untouched reservations")


def _send_checked(
    app: App, ready: list[Prepared], now: datetime, attempted: set[int]
) -> list[tuple[Claim, Outcome]]:
    results: list[tuple[Claim, Outcome]] = []
    sent: list[Prepared] = []
    for item in ready:
        attempted.add(item.send_id)
        try:
            outcome = dispatch.deliver(app, item, now)
        except TransientSendError as exc:
            outcome = Outcome("retry", str(exc), item.send_id)
        results.append(((item.enrollment_id, item.step), outcome))
        if outcome.status == "sent":
            sent.append(item)
    record_sent(app, sent, now)
    return results


def _send_locked(
    app: App, ready: list[Prepared], now: datetime, attempted: set[int]
) -> list[tuple[Claim, Outcome]]:
    if not ready:
        return []
    results: list[tuple[Claim, Outcome]] = []
    refused: list[tuple[Prepared, dispatch.SendRefusal]] = []
    deadline = time.monotonic() + LOCK_BUDGET_SECONDS
    sent: list[Prepared] = []
    try:
        _speak_locked(app, ready, attempted, deadline, sent, refused, results, now)
    except sa.exc.OperationalError:
        # the database went away mid-group, and the locks with it; what the server said is
        # known: record it once the database is back, then let the rest be handed back
        record_sent(app, sent, now)
        for item, refusal in refused:
            dispatch.record_refusal(app, item, refusal, now)
        raise
    # refusals lock their enrollments one by one: only once the group's locks are gone
    for item, refusal in refused:
        outcome = dispatch.record_refusal(app, item, refusal, now)
        results.append(((item.enrollment_id, item.step), outcome))
    return results


def _speak_locked(
    app: App,
    ready: list[Prepared],
    attempted: set[int],
    deadline: float,
    sent: list[Prepared],
    refused: list[tuple[Prepared, dispatch.SendRefusal]],
    results: list[tuple[Claim, Outcome]],
    now: datetime,
) -> None:
    """Check, send and record a reserved group under its enrollments' row locks."""
    with app.engine.begin() as connection:
        ids = [item.enrollment_id for item in ready]
        wanted = {(row.id, row.step) for row in connection.execute(WANTED, {"ids": ids})}
        handed: set[int] = set()
        for index, item in enumerate(ready):
            claim = (item.enrollment_id, item.step)
            if claim not in wanted or time.monotonic() > deadline:
                connection.execute(RELEASE, {"sid": item.send_id, "why": dispatch.NOT_WANTED})
                why = "not sent: changed or out of time"
                results.append((claim, Outcome("skipped", why, item.send_id)))
                continue
            if item.send_id not in handed:
                ahead = [
                    later.send_id
                    for later in ready[index : index + HAND_AHEAD]
                    if (later.enrollment_id, later.step) in wanted
                ]
                handed |= ledger.hand(app.engine, ahead)
            if item.send_id not in handed:
                results.append((claim, Outcome("skipped", dispatch.TAKEN_OVER, item.send_id)))
                continue
            attempted.add(item.send_id)
            refusal = dispatch.attempt(app, item)
            if refusal is None:
                sent.append(item)
                results.append((claim, Outcome("sent", item.message_id, item.send_id)))
            else:
                refused.append((item, refusal))
        write_sent(connection, sent, now)


def _run_one(app: App, claim: Claim, now: datetime) -> Outcome:
    try:
        return dispatch.run_step(app, claim[0], claim[1], now)
    except TransientSendError as exc:
        return Outcome("retry", str(exc))
