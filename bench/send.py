"""The whole send path against raw SMTP, in the same run, over the same connections.

Run: python -m bench.send [--n 5000] [--processes 2] [--threads 4]
Needs PostgreSQL and Redis. An aiosmtpd sink runs in its own process. The engine's path:
a scheduler pass claims every due step on PostgreSQL and enqueues it on Redis; real
`outreach worker` processes render, reserve the send in the ledger, speak SMTP and record
it. The baseline pushes the same number of pre-built messages with smtplib over the same
number of connections (processes x threads). Also reported: render + MIME build per message
and the largest worker RSS seen.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import redis
import sqlalchemy as sa

from bench.common import REDIS_URL, fresh_database, report, timed
from bench.sink import Sink
from outreach.app import build_app
from outreach.compose import compose
from outreach.db import transaction
from outreach.message import build_message
from outreach.models import Prospect
from outreach.runtime import start
from outreach.settings import Settings
from outreach.versions import store

ROOT = Path(__file__).resolve().parent.parent
PORT = 2599
SEQUENCE = """\
name: Bench
sender:
  from: ["Ann Rep <ann@acme.example>", "Bo Rep <bo@acme.example>"]
  address: "Acme AB, Box 1, 111 22 Stockholm"
schedule:
  timezone: UTC
  window: "00:00-24:00"
  days: [mon, tue, wed, thu, fri, sat, sun]
steps:
  - email:
      variants: [bench_a, bench_b]
"""
TEMPLATE = """\
---
subject: "Quick question, {{ prospect.first_name | default('there') }}"
---
Hi {{ prospect.first_name | default('there') }},

I noticed {{ prospect.company }} is hiring SDRs. Teams like yours use us to make sure
every prospect gets the follow-up they were promised, inside business hours, and that
nobody hears from us again once they answer.

Worth 15 minutes next week?

{{ sender.name }}
"""


def workspace(folder: Path) -> Settings:
    (folder / "sequences").mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "sequences" / "bench.yaml").write_text(SEQUENCE)
    for name in ("bench_a", "bench_b"):
        (folder / "templates" / f"{name}.j2").write_text(
            TEMPLATE.replace("Quick", name[-1].upper())
        )
    return Settings(
        database_url=fresh_database("outreach_bench_send"),
        broker_url=REDIS_URL,
        smtp_url=f"smtp://127.0.0.1:{PORT}",
        sequences_dir=folder / "sequences",
        templates_dir=folder / "templates",
        secret_key="bench",
        _env_file=None,  # type: ignore[call-arg]
    )


WARM = 400  # enrollments sent first, untimed: every worker thread connected and warm


def enroll_all(settings: Settings, n: int, now: datetime) -> None:
    """Prospects and enrollments by SQL; enrolling is not what is measured here."""
    app = build_app(settings)
    sequence = app.sequence("bench")
    with transaction(app.engine) as session:
        version = store(session, sequence, now)
    with app.engine.begin() as c:
        c.execute(
            sa.text("""
            INSERT INTO prospect (email, first_name, company, fields, score, created_at, updated_at)
            SELECT 'p' || g || '@example.com', 'First' || g, 'Company ' || g, '{}', 0, now(), now()
            FROM generate_series(1, :n) g"""),
            {"n": n},
        )
        c.execute(
            sa.text("""
            INSERT INTO enrollment (prospect_id, sequence_id, version_id, state, step, next_run_at,
                sender, exclusive, enrolled_at, updated_at)
            SELECT id, 'bench', :v, 'active', 1,
                CASE WHEN id <= :warm THEN :early ELSE :now END,
                CASE WHEN id % 2 = 0 THEN 'Ann Rep <ann@acme.example>'
                     ELSE 'Bo Rep <bo@acme.example>' END,
                true, now(), now()
            FROM prospect"""),
            {"v": version.id, "now": now, "warm": WARM, "early": now - timedelta(hours=1)},
        )
        c.execute(sa.text("ANALYZE"))
    app.close()


def sent_count(engine: sa.Engine) -> int:
    with engine.connect() as c:
        return int(
            c.execute(sa.text("SELECT count(*) FROM send WHERE status = 'sent'")).scalar() or 0
        )


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OUTREACH_DATABASE_URL=settings.database_url,
        OUTREACH_BROKER_URL=settings.broker_url or "",
        OUTREACH_SMTP_URL=settings.smtp_url or "",
        OUTREACH_SECRET_KEY="bench",
        OUTREACH_SEQUENCES_DIR=str(settings.sequences_dir),
        OUTREACH_TEMPLATES_DIR=str(settings.templates_dir),
    )
    return env


class RssWatch(threading.Thread):
    """Samples the RSS of every process under a root process."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                for proc in [self.root, *self.root.children(recursive=True)]:
                    self.peak = max(self.peak, proc.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.5)


def engine_run(
    settings: Settings, n: int, processes: int, threads: int, sink: Sink
) -> dict[str, float]:
    now = datetime.now(UTC)
    enroll_all(settings, n + WARM, now)
    redis.Redis.from_url(REDIS_URL).flushdb()
    command = [
        sys.executable,
        "-m",
        "outreach",
        "worker",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]
    worker = subprocess.Popen(
        command,
        env=worker_env(settings),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watch = RssWatch(worker.pid)
    watch.start()
    app = build_app(settings)
    runtime = start(app)
    try:
        runtime.tick(now - timedelta(minutes=30))
        while sent_count(app.engine) < WARM:
            time.sleep(0.05)
        sink.reset()
        with timed() as seconds:
            with timed() as dispatch:
                runtime.tick(datetime.now(UTC))
            while sent_count(app.engine) < n + WARM:
                time.sleep(0.05)
    finally:
        watch.running = False
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait()
        runtime.close()
    assert sink.count == n, (sink.count, n)
    return {
        "seconds": seconds[0],
        "dispatch_seconds": dispatch[0],
        "rss_peak_mb": watch.peak / 2**20,
    }


def prebuilt(settings: Settings, n: int) -> list[tuple[str, str, bytes]]:
    app = build_app(settings)
    sequence = app.sequence("bench")
    step = sequence.steps[0]
    person = Prospect(id=1, email="p@example.com", first_name="First", company="Company", fields={})
    messages, start_at = [], time.perf_counter()
    for i in range(n):
        composed = compose(
            app,
            sequence=sequence,
            step=step,
            template=step.templates[i % 2],
            prospect=person,
            sender=sequence.sender.addresses[i % 2],
            enrollment_id=i + 1,
            earlier=[],
            now=datetime.now(UTC),
        )
        data = build_message(composed.email)
        messages.append((composed.sender_email, f"p{i}@example.com", data))
    per_message = (time.perf_counter() - start_at) / n
    app.close()
    return messages, per_message  # type: ignore[return-value]


def _raw_connection(chunk: list[tuple[str, str, bytes]]) -> None:
    with smtplib.SMTP("127.0.0.1", PORT) as smtp:
        for sender, rcpt, data in chunk:
            smtp.sendmail(sender, [rcpt], data)


def _raw_process(chunks: list[list[tuple[str, str, bytes]]]) -> None:
    threads = [threading.Thread(target=_raw_connection, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def raw_run(
    messages: list[tuple[str, str, bytes]], processes: int, threads: int, sink: Sink
) -> float:
    connections = processes * threads
    chunks = [messages[i::connections] for i in range(connections)]
    per_process = [chunks[i::processes] for i in range(processes)]
    sink.reset()
    with timed() as seconds:
        workers = [multiprocessing.Process(target=_raw_process, args=(c,)) for c in per_process]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert sink.count == len(messages), (sink.count, len(messages))
    return seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1, help="raw and engine runs, alternated")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    import tempfile

    rounds: list[tuple[float, float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        sink = Sink(PORT).start()
        try:
            settings = workspace(Path(folder))
            messages, build_s = prebuilt(settings, min(args.n, 20000))
            messages = (messages * (args.n // len(messages) + 1))[: args.n]
            for _ in range(args.rounds):
                raw_rate = args.n / raw_run(messages, args.processes, args.threads, sink)
                engine = engine_run(
                    workspace(Path(folder)), args.n, args.processes, args.threads, sink
                )
                rounds.append((raw_rate, args.n / engine["seconds"], engine))
        finally:
            sink.stop()
    ratios = sorted(engine_rate / raw_rate for raw_rate, engine_rate, _ in rounds)
    raw_rate, engine_rate, engine = sorted(rounds, key=lambda r: r[1] / r[0])[len(rounds) // 2]
    report(
        "send",
        {
            "messages per round": args.n,
            "rounds": args.rounds,
            "connections (processes x threads)": f"{args.processes} x {args.threads}",
            "raw smtplib, msg/s (baseline, median round)": raw_rate,
            "engine, msg/s (claim, render, ledger, SMTP, record)": engine_rate,
            "engine / raw, median (target >= 0.5, stretch 0.8)": engine_rate / raw_rate,
            "engine / raw, lowest and highest": f"{ratios[0]:.3f} .. {ratios[-1]:.3f}",
            "scheduler pass (claim + enqueue all), s": engine["dispatch_seconds"],
            "render + MIME build, microseconds/message": build_s * 1e6,
            "peak worker RSS, MB (target < 150)": max(r[2]["rss_peak_mb"] for r in rounds),
        },
    )


if __name__ == "__main__":
    main()
