"""Sending a batch of due steps: one locked load, one reservation, one record for the lot.

Each step keeps the same promises as when run alone: it is checked under its enrollment's
lock and reserved in the ledger before SMTP, so a batch redelivered or cut off sends nothing
twice. Steps the fast path cannot take run one by one through `dispatch.run_step`.
"""

from __future__ import annotations

from datetime import datetime

from outreach import dispatch, fastpath
from outreach.app import App
from outreach.db import transaction
from outreach.errors import TransientSendError
from outreach.outcomes import Outcome, record_sent

Claim = tuple[int, int]


def run_batch(app: App, claims: list[Claim], now: datetime) -> list[tuple[Claim, Outcome]]:
    """Run every claimed step; a transient refusal comes back as a 'retry' outcome."""
    with transaction(app.engine) as session:
        ready, left = fastpath.prepare_many(app, session, claims, now)
    results: list[tuple[Claim, Outcome]] = []
    sent: list[fastpath.Prepared] = []
    for item in ready:
        outcome = _deliver(app, item, now)
        results.append(((item.enrollment_id, item.step), outcome))
        if outcome.status == "sent":
            sent.append(item)
    record_sent(app, sent, now)
    for claim in left:
        results.append((claim, _run_one(app, claim, now)))
    return results


def _deliver(app: App, item: fastpath.Prepared, now: datetime) -> Outcome:
    try:
        return dispatch.deliver(app, item, now)
    except TransientSendError as exc:
        return Outcome("retry", str(exc))


def _run_one(app: App, claim: Claim, now: datetime) -> Outcome:
    try:
        return dispatch.run_step(app, claim[0], claim[1], now)
    except TransientSendError as exc:
        return Outcome("retry", str(exc))
