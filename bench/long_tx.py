"""Scheduler claims under steady churn: alone, and while another session holds a transaction.

Run: python -m bench.long_tx [--total 200000] [--due 10000] [--rounds 80] [--full-every 12]
Needs PostgreSQL (postgres@127.0.0.1); no Redis (nothing is enqueued, only claimed).

The known failure of queue tables on PostgreSQL: rows that are worked off leave dead
tuples (and dead index entries) behind, and while any transaction in the same database
keeps an old snapshot open, neither VACUUM nor on-the-fly pruning can remove them, so
every claim walks over more and more of them. This bench replays a steady state with
simulated time, one round per simulated minute:

  1. drop expired claims (`drop_expired_claims`, as each scheduler pass does);
  2. claim `--batches` batches of `--batch` due steps with one `Claimer`, timing each;
     as a scheduler does (`claims.Sweep`), only every `--full-every`-th pass reads the due
     index from its start, the others from a round before the last such pass (a scheduler
     passes every few seconds and reads from the start once a minute; `--full-every 1`
     makes every pass read from the start);
  3. the "workers" send them: each claimed enrollment moves to its next step two days
     later (the enrollment UPDATE of `bulk.RECORD_SENT`), its claim stays until its lease
     runs out, so `dispatch_claim` churns through inserts and deletes like production.

New steps come due at the same rate as they are claimed, so the backlog stays ~`--due`.
After each round an untimed VACUUM/ANALYZE stands in for autovacuum (see `autovacuum`);
`--no-autovacuum` leaves the statistics to go stale, which flips the claim's plan.
After a lease's worth of warm-up rounds and a VACUUM ANALYZE, phase (a) runs with no
other session; then everything is vacuumed and analyzed again and phase (b) runs as many
rounds while another connection holds `REPEATABLE READ` + `txid_current()` open. At the
end of each phase the first claim batch of a pass is run under EXPLAIN ANALYZE (and rolled
back), once with the statistics as they stand and once after a fresh ANALYZE.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import fresh_database, report, seed_prospects
from outreach.app import build_app
from outreach.claims import (
    CLAIM_SQL,
    EPOCH,
    SKIP_TAKEN,
    TIMES,
    WINDOW_FACTOR,
    Claimer,
    Sweep,
    drop_expired_claims,
)
from outreach.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROUND = timedelta(minutes=1)  # simulated time between two scheduler passes
LEASE = 600  # the default dispatch lease: a claim lives ten rounds, then is dropped
TABLES = ("enrollment", "dispatch_claim")

# the enrollment half of bulk.RECORD_SENT: the step is done, the next one is due later
ADVANCE = sa.text("""
    UPDATE enrollment
    SET step = v.cur + 1, last_step_at = :now, updated_at = :now,
        next_run_at = CAST(:now AS timestamptz) + interval '2 days', state = 'active'
    FROM unnest(CAST(:ids AS int[]), CAST(:steps AS int[])) AS v(eid, cur)
    WHERE enrollment.id = v.eid AND enrollment.state = 'active' AND enrollment.step = v.cur
""")


def populate(url: str, total: int, due: int, per_round: int) -> None:
    """`due` steps already due at NOW; the rest come due `per_round` per simulated minute."""
    engine = sa.create_engine(url)
    step = ROUND / per_round
    with engine.begin() as c:
        seed_prospects(c, total)
        # ids interleave backlog and arrivals, so due rows are scattered over the heap
        c.execute(
            sa.text("""
            INSERT INTO enrollment (prospect_id, sequence_id, version_id, state, step,
                next_run_at, sender, exclusive, enrolled_at, updated_at)
            SELECT g, 'bench', 1, 'active', 1,
                CASE WHEN g % (:total / :due) = 0
                     THEN CAST(:now AS timestamptz) - interval '1 minute'
                     ELSE CAST(:now AS timestamptz)
                          + (g - g / (:total / :due)) * CAST(:step AS interval) END,
                'Ann <ann@acme.example>', true, now(), now()
            FROM generate_series(1, :total) g"""),
            {"total": total, "due": due, "now": NOW, "step": step},
        )
    vacuum(engine)
    engine.dispose()


def vacuum(engine: sa.Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE"))


def dead_tuples(engine: sa.Engine) -> dict[str, Any]:
    """n_dead_tup per table, the sizes of the indexes the claim reads, and a plan's cost."""
    out: dict[str, Any] = {}
    with engine.connect() as c:
        c.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        for table in TABLES:
            live, dead, analyzed, vacuumed = c.execute(
                sa.text("""
                    SELECT n_live_tup, n_dead_tup, autoanalyze_count, autovacuum_count
                    FROM pg_stat_user_tables WHERE relname = :t"""),
                {"t": table},
            ).one()
            out[f"{table} n_dead_tup"] = dead
            out[f"{table} n_live_tup"] = live
            out[f"{table} autovacuum/autoanalyze runs so far"] = f"{vacuumed}/{analyzed}"
        for index in ("ix_enrollment_due", "dispatch_claim_pkey", "ix_dispatch_claim_until"):
            size = c.execute(sa.text("SELECT pg_relation_size(CAST(:i AS regclass))"), {"i": index})
            out[f"{index} kB"] = size.scalar_one() // 1024
    return out


def plans(engine: sa.Engine, now: datetime, batch: int) -> dict[str, Any]:
    """The first claim batch's plan as the statistics stand, then after a fresh ANALYZE."""
    out = plan(engine, now, batch)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("ANALYZE enrollment, dispatch_claim"))
    out.update({f"{k}, after ANALYZE": v for k, v in plan(engine, now, batch).items()})
    out["first claim batch, median of 15 rolled-back runs, ms"] = repeat(engine, now, batch)
    return out


def first_batch(now: datetime, batch: int) -> dict[str, Any]:
    """The parameters of a pass's first claim batch, read from the start of the due index."""
    return {
        "now": now,
        "until": now + timedelta(seconds=LEASE),
        "n": batch,
        "window": batch * WINDOW_FACTOR,
        "after_at": EPOCH,
        "after_id": 0,
    }


def repeat(engine: sa.Engine, now: datetime, batch: int, times: int = 15) -> float:
    """The first claim batch of a pass, timed again and again (each one rolled back)."""
    claim = sa.text(CLAIM_SQL.format(skip_taken=SKIP_TAKEN["postgresql"])).bindparams(*TIMES)
    params = first_batch(now, batch)
    spent = []
    with engine.connect() as c:
        for _ in range(times):
            t0 = time.perf_counter()
            rows = c.execute(claim, params).all()
            spent.append(time.perf_counter() - t0)
            c.rollback()
            assert len(rows) == batch, len(rows)
    return statistics.median(spent) * 1000


def plan(engine: sa.Engine, now: datetime, batch: int) -> dict[str, Any]:
    """What a pass's first claim batch touches (run and rolled back): heap fetches, buffers."""
    with engine.connect() as c:
        claim = CLAIM_SQL.format(skip_taken=SKIP_TAKEN["postgresql"])
        sql = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + claim
        params = first_batch(now, batch)
        doc = c.execute(sa.text(sql).bindparams(*TIMES), params).scalar_one()
        c.rollback()
    root = doc[0]["Plan"]
    fetches, nodes = 0, []
    stack = [root]
    while stack:
        node = stack.pop()
        fetches += node.get("Heap Fetches", 0)
        name = " ".join(filter(None, (node["Node Type"], node.get("Index Name"))))
        rows = node["Actual Rows"] * node["Actual Loops"]
        nodes.append(f"{name} (rows est {node['Plan Rows']}/actual {rows})")
        stack.extend(reversed(node.get("Plans", [])))
    return {
        "first claim batch, EXPLAIN ANALYZE ms": doc[0]["Execution Time"],
        "first claim batch, buffers": root["Shared Hit Blocks"] + root["Shared Read Blocks"],
        "first claim batch, heap fetches": fetches,
        "first claim batch, plan": " > ".join(nodes),
    }


def autovacuum(engine: sa.Engine, r: int) -> None:
    """What autovacuum does at its defaults when a round is a real minute (its naptime).

    dispatch_claim (~11k rows, ~2k changed a round) passes both thresholds (50 + 20% dead,
    50 + 10% changed) every round; enrollment (200k rows, 1k changed a round) passes its
    analyze threshold every 20 rounds and its vacuum threshold every 40. Untimed: the
    bench compresses an hour into seconds, so the daemon itself would hardly ever run.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE dispatch_claim"))
        if r % 20 == 0:
            c.execute(sa.text(("VACUUM ANALYZE" if r % 40 == 0 else "ANALYZE") + " enrollment"))


def phase(
    url: str,
    settings: Settings,
    first_round: int,
    rounds: int,
    batch: int,
    batches: int,
    maintain: bool = True,
    full_every: int = 12,
) -> tuple[dict[str, Any], int, datetime]:
    """Run `rounds` rounds of claim-and-advance; returns the phase's figures."""
    app = build_app(settings, migrate=False)
    engine = app.engine
    # a scheduler reads the due index from its start once a minute and passes every few
    # seconds: here a round is a minute, so a full pass every `full_every` rounds stands in
    sweep = Sweep(every=ROUND * full_every - timedelta(seconds=1), margin=ROUND)
    latencies: list[float] = []
    first_batch: list[float] = []
    drops: list[float] = []
    claimed_total = 0
    start = time.perf_counter()
    now = NOW
    for r in range(first_round, first_round + rounds):
        now = NOW + r * ROUND
        t0 = time.perf_counter()
        drop_expired_claims(engine, now)
        drops.append(time.perf_counter() - t0)
        since = sweep.since(now)
        claimer = Claimer(engine, now, LEASE, since)
        claimed: list[tuple[int, int]] = []
        for i in range(batches):
            t0 = time.perf_counter()
            got = claimer.next(batch)
            spent = time.perf_counter() - t0
            latencies.append(spent)
            if i == 0:
                first_batch.append(spent)
            claimed += got
            if len(got) < batch:
                break
        with engine.begin() as c:
            c.execute(
                ADVANCE,
                {"now": now, "ids": [e for e, _ in claimed], "steps": [s for _, s in claimed]},
            )
        sweep.done(now, since)
        claimed_total += len(claimed)
        if maintain:
            autovacuum(engine, r)
    wall = time.perf_counter() - start
    app.close()  # a backend flushes its table statistics as it exits
    time.sleep(1.0)
    ms = sorted(x * 1000 for x in latencies)
    tenth = max(1, rounds // 10)
    figures = {
        "rounds": rounds,
        "steps claimed": claimed_total,
        "claim batch median ms": statistics.median(ms),
        "claim batch p95 ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
        "first batch of a pass, median ms, first 10% of rounds": statistics.median(
            x * 1000 for x in first_batch[:tenth]
        ),
        "first batch of a pass, median ms, last 10% of rounds": statistics.median(
            x * 1000 for x in first_batch[-tenth:]
        ),
        "claims/s (claim time only)": claimed_total / sum(latencies),
        "drop_expired_claims median ms": statistics.median(x * 1000 for x in drops),
        "drop_expired_claims p95 ms": sorted(drops)[int(0.95 * len(drops))] * 1000,
        "phase wall seconds": wall,
    }
    return figures, first_round + rounds, now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=200_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=80, help="scheduler passes per phase")
    parser.add_argument("--batch", type=int, default=500, help="Settings.batch_size")
    parser.add_argument("--batches", type=int, default=2, help="batches claimed per pass")
    parser.add_argument(
        "--full-every",
        type=int,
        default=12,
        help="rounds per full pass from the start of the due index (1: every pass is full)",
    )
    parser.add_argument(
        "--no-autovacuum",
        action="store_true",
        help="skip the per-round VACUUM/ANALYZE that stands in for autovacuum",
    )
    args = parser.parse_args()
    run = {
        "batch": args.batch,
        "batches": args.batches,
        "maintain": not args.no_autovacuum,
        "full_every": args.full_every,
    }
    per_round = args.batch * args.batches
    needed = args.due + (2 * args.rounds + 11) * per_round
    assert needed < args.total, f"--total too small for the rounds: needs > {needed}"

    url = fresh_database("outreach_bench_longtx")
    settings = Settings(
        database_url=url,
        sequences_dir=ROOT / "sequences",
        templates_dir=ROOT / "templates",
        secret_key="bench",
        batch_size=args.batch,
        dispatch_lease_seconds=LEASE,
        _env_file=None,  # type: ignore[call-arg]
    )
    build_app(settings).close()  # creates the schema
    populate(url, args.total, args.due, per_round)
    admin = sa.create_engine(url)
    # a lease's worth of rounds first, so both phases start alike: ~lease of live claims,
    # everything vacuumed and analyzed
    warm = LEASE // int(ROUND.total_seconds()) + 1
    _, first, _ = phase(url, settings, 1, warm, **run)
    vacuum(admin)

    print(f"phase (a): {args.rounds} rounds, no other session", flush=True)
    alone, next_round, now = phase(url, settings, first, args.rounds, **run)
    alone.update(dead_tuples(admin))
    alone.update(plans(admin, now, args.batch))

    vacuum(admin)  # both phases start from a vacuumed table
    holder_engine = sa.create_engine(url, isolation_level="REPEATABLE READ")
    holder = holder_engine.connect()
    holder.execute(sa.text("SELECT txid_current()"))
    holder.execute(sa.text("SELECT count(*) FROM enrollment"))  # takes the snapshot
    print(f"phase (b): {args.rounds} rounds, another session idle in transaction", flush=True)
    held, _, now = phase(url, settings, next_round, args.rounds, **run)
    held.update(dead_tuples(admin))
    held.update(plans(admin, now, args.batch))
    with admin.connect() as c:
        held["holder's xmin age (xids) at the end"] = c.execute(
            sa.text("""
            SELECT max(age(backend_xmin)) FROM pg_stat_activity
            WHERE datname = current_database() AND state = 'idle in transaction'""")
        ).scalar_one()
    holder.rollback()
    holder.close()
    holder_engine.dispose()

    figures: dict[str, object] = {
        "enrollments": args.total,
        "backlog due": args.due,
        "claim batch": args.batch,
        "autovacuum stand-in each round": not args.no_autovacuum,
    }
    figures.update({f"(a) {k}": v for k, v in alone.items()})
    figures.update({f"(b) {k}": v for k, v in held.items()})
    figures["throughput ratio (b)/(a), claims/s"] = (
        held["claims/s (claim time only)"] / alone["claims/s (claim time only)"]
    )
    figures["p95 ratio (b)/(a)"] = held["claim batch p95 ms"] / alone["claim batch p95 ms"]
    key = "first claim batch, median of 15 rolled-back runs, ms"
    figures["end-of-phase first batch ratio (b)/(a)"] = held[key] / alone[key]
    admin.dispose()
    report("long_tx", figures)


if __name__ == "__main__":
    main()
