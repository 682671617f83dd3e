"""PostgreSQL statements that write a whole batch at once, with arrays and `unnest`.

The portable statements in `fastpath` and `outcomes` run one row at a time under the
driver; on PostgreSQL a batch instead goes in one statement and one round trip, which is
most of what recording a send costs.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

INSERT_SENDS = """
INSERT INTO send (enrollment_id, step, message_id, status, template, subject, to_email,
                  sender_email, attempts, created_at, started_at)
SELECT e, s, m, 'sending', t, subj, rcpt, sender, 1, %(now)s, %(now)s
FROM unnest(%(e)s::int[], %(s)s::int[], %(m)s::text[], %(t)s::text[], %(subj)s::text[],
            %(rcpt)s::text[], %(sender)s::text[]) AS v(e, s, m, t, subj, rcpt, sender)
RETURNING id, enrollment_id
"""

RECORD_SENT = """
WITH v AS (
    SELECT * FROM unnest(%(sid)s::int[], %(eid)s::int[], %(cur)s::int[],
                         %(following)s::timestamptz[], %(state)s::text[], %(pid)s::int[],
                         %(seq)s::text[], %(data)s::json[])
        AS v(sid, eid, cur, following, state, pid, seq, data)
), marked AS (
    UPDATE send SET status = 'sent', sent_at = %(now)s
    FROM v WHERE send.id = v.sid AND send.status = 'sending'
    RETURNING send.id AS sid
), moved AS (
    UPDATE enrollment
    SET step = v.cur + 1, last_step_at = %(now)s, updated_at = %(now)s,
        next_run_at = v.following, state = v.state
    FROM v WHERE enrollment.id = v.eid AND enrollment.state = 'active' AND enrollment.step = v.cur
), calmed AS (
    UPDATE dispatch_claim SET starts = 0
    FROM v WHERE dispatch_claim.enrollment_id = v.eid AND dispatch_claim.step = v.cur
      AND dispatch_claim.starts > 0
)
INSERT INTO event (prospect_id, enrollment_id, sequence_id, step, type, at, data)
SELECT pid, eid, seq, cur, 'sent', %(now)s, data FROM v JOIN marked USING (sid)
"""
# (calmed: the worker came back from these steps, see outreach.crashes)
# the event only for a send this statement marked: recording twice (a commit whose answer
# was lost with the connection, then recorded again) adds no second event


def run(connection: sa.Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    """Run the driver's own SQL (psycopg's %(name)s parameters, arrays as lists).

    Through SQLAlchemy, so a lost connection is an OperationalError like any other, and
    the pool drops it.
    """
    result = connection.exec_driver_sql(sql, params)
    return list(result.fetchall()) if result.returns_rows else []


def insert_sends(
    connection: sa.Connection, rows: list[dict[str, Any]], now: datetime
) -> dict[int, int]:
    """Insert 'sending' ledger rows; returns the send id per enrollment id."""
    keys = (
        "enrollment_id",
        "step",
        "message_id",
        "template",
        "subject",
        "to_email",
        "sender_email",
    )
    names = ("e", "s", "m", "t", "subj", "rcpt", "sender")
    params: dict[str, Any] = {n: [row[k] for row in rows] for n, k in zip(names, keys, strict=True)}
    params["now"] = now
    return {
        enrollment_id: send_id for send_id, enrollment_id in run(connection, INSERT_SENDS, params)
    }


def record_sent(connection: sa.Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    """Mark sends sent, move their enrollments on and add their events: one statement."""
    params: dict[str, Any] = {key: [row[key] for row in rows] for key in rows[0]}
    params["data"] = [json.dumps(value) for value in params["data"]]
    params["now"] = now
    run(connection, RECORD_SENT, params)
