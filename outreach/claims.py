"""Claims on due steps: which pass handed which step to the workers, and until when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from outreach.models import DispatchClaim, UTCDateTime

CLAIM_SQL = """
    INSERT INTO dispatch_claim (enrollment_id, step, until, attempts, due_at)
    SELECT due.id, due.step, :until, 1, due.next_run_at FROM (
        SELECT e.id, e.step, e.next_run_at FROM enrollment e
        WHERE e.state = 'active' AND e.next_run_at <= :now
          AND (e.next_run_at, e.id) > (:after_at, :after_id)
          AND NOT EXISTS (SELECT 1 FROM dispatch_claim c
                          WHERE c.enrollment_id = e.id AND c.step = e.step AND c.until > :now)
        ORDER BY e.next_run_at, e.id
        LIMIT :window
    ) AS due
    WHERE {skip_taken}
    ORDER BY due.next_run_at, due.id
    LIMIT :n
    ON CONFLICT (enrollment_id) DO UPDATE
      SET until = excluded.until,
          attempts = CASE WHEN dispatch_claim.step = excluded.step
                          THEN dispatch_claim.attempts + 1 ELSE 1 END,
          starts = CASE WHEN dispatch_claim.step = excluded.step
                        THEN dispatch_claim.starts ELSE 0 END,
          step = excluded.step,
          due_at = excluded.due_at
      WHERE dispatch_claim.until <= :now OR dispatch_claim.step <> excluded.step
    RETURNING enrollment_id, step, due_at
"""
# PostgreSQL: like SKIP LOCKED, a step another scheduler is claiming right now is passed
# over, with an in-memory advisory lock instead of a row lock that writes to the page. It
# is tried only on unclaimed candidates (at most :window of them), never on the backlog.
SKIP_TAKEN = {"postgresql": "pg_try_advisory_xact_lock(71461, due.id)"}
# candidates looked at per batch: room to pass over steps another pass is taking
WINDOW_FACTOR = 4
TIMES = tuple(sa.bindparam(name, type_=UTCDateTime()) for name in ("now", "until", "after_at"))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _claim(dialect: str) -> sa.TextualSelect:
    # SQLite reads ON CONFLICT after a bare SELECT as a join clause: it needs a WHERE
    sql = CLAIM_SQL.format(skip_taken=SKIP_TAKEN.get(dialect, "1 = 1"))
    return (
        sa.text(sql)
        .bindparams(*TIMES)
        .columns(
            sa.column("enrollment_id", sa.Integer()),
            sa.column("step", sa.Integer()),
            sa.column("due_at", UTCDateTime()),
        )
    )


# a claim whose worker died keeps its count of starts until a worker finishes the step
# (or a day has passed): the count is what parks a step that kills every worker
EXPIRED = sa.delete(DispatchClaim).where(
    col(DispatchClaim.until) < sa.bindparam("now"),
    sa.or_(col(DispatchClaim.starts) == 0, col(DispatchClaim.until) < sa.bindparam("stale")),
)
FORGET_CRASHES_AFTER = timedelta(days=1)


class Claimer:
    """Claims the due steps of one pass batch by batch, each batch after the last one.

    Batches page through the due index (by due time, then id), so a pass does not read
    the steps it already claimed again. `since` starts the pass at that due time instead of
    the beginning (see `Sweep`).
    """

    def __init__(
        self, engine: sa.Engine, now: datetime, lease_seconds: int, since: datetime = EPOCH
    ) -> None:
        self.engine, self.now = engine, now
        self.until = now + timedelta(seconds=lease_seconds)
        self.after: tuple[datetime, int] = (since, 0)

    def next(self, limit: int) -> list[tuple[int, int]]:
        """Claim up to `limit` more due steps; returns (enrollment, step) pairs."""
        params = {
            "now": self.now,
            "until": self.until,
            "n": limit,
            "window": limit * WINDOW_FACTOR,
            "after_at": self.after[0],
            "after_id": self.after[1],
        }
        with self.engine.begin() as connection:
            rows = connection.execute(_claim(connection.dialect.name), params).all()
        if rows:
            self.after = max((row.due_at, row.enrollment_id) for row in rows)
        return [(int(row.enrollment_id), int(row.step)) for row in rows]


@dataclass
class Sweep:
    """Which passes read the due index from its beginning, and where the others start.

    Every step worked off leaves an index entry at its old due time behind, dead, until
    VACUUM removes it; while another session holds a long transaction open, VACUUM cannot,
    and a pass reading from the beginning walks every one of them. So a scheduler reads
    from the beginning once a minute (a full pass) and, in between, from a little before
    its last full pass: everything due before that was claimed then. What a later pass can
    miss below that point is found by the next full pass, within a minute: a step whose
    claim ran out (its message lost), or one written with a due time already long past.
    """

    every: timedelta = timedelta(seconds=60)
    margin: timedelta = timedelta(seconds=60)  # writes that commit late, clocks that differ
    full_at: datetime | None = None

    def since(self, now: datetime) -> datetime:
        """Where a pass at `now` starts: EPOCH for a full pass."""
        if self.full_at is None or not self.full_at <= now < self.full_at + self.every:
            return EPOCH
        return self.full_at - self.margin

    def done(self, now: datetime, since: datetime) -> None:
        """A pass that started at `since` went through."""
        if since == EPOCH:
            self.full_at = now


def claim_due(
    engine: sa.Engine, now: datetime, limit: int, lease_seconds: int
) -> list[tuple[int, int]]:
    """Claim up to `limit` due steps, each for `lease_seconds`; returns (enrollment, step).

    A claim is a row in its own small table, written with INSERT … ON CONFLICT: two
    schedulers racing for a step meet on its key and only one gets it; on PostgreSQL a
    step another pass is claiming at that moment is skipped, as SKIP LOCKED would.
    Finding due steps reads only the covering due index, and claiming writes only that
    small table, so a pass costs what is due, not what is enrolled (locking the due
    enrollment rows instead wrote a full-page image of WAL for every scattered row). A step
    whose message is lost comes due again when its claim runs out; a claim for an earlier
    step never blocks the next.
    """
    return Claimer(engine, now, lease_seconds).next(limit)


def drop_expired_claims(engine: sa.Engine, now: datetime) -> None:
    """Forget claims that ran out: their steps are claimable again anyway."""
    with engine.begin() as connection:
        connection.execute(EXPIRED, {"now": now, "stale": now - FORGET_CRASHES_AFTER})


def release(session: Session, enrollment_id: int) -> None:
    """Let a step that was moved to a new time be claimed again as soon as it is due."""
    session.execute(
        sa.delete(DispatchClaim).where(col(DispatchClaim.enrollment_id) == enrollment_id)
    )
