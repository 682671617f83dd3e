"""Chaos scenarios: kill, restart and starve every part while mail flows, then audit.

Each scenario enrolls its people in a two-email sequence, starts real worker and scheduler
processes on PostgreSQL and Redis, injects its faults while the sink is taking mail, waits
for every enrollment to settle and audits: each step sent exactly once, visibly failed or
visibly unknown; no duplicate at the sink; nothing after a stop. Run them with
`pytest tests/chaos -m chaos` (CHAOS_SCALE=short for the quick form CI runs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from signal import SIGTERM

import pytest

from outreach import crashes
from outreach.inbound.ingest import ingest
from tests.chaos.harness import (
    PEOPLE,
    SCALE,
    Row,
    Stack,
    audit,
    message_id,
    restart_postgres,
    restart_redis,
)

KILLS = 12
Faults = Callable[[Stack], None]


def run(
    stack: Stack,
    report: list[Row],
    scenario: str,
    faults: Faults,
    *,
    workers: int = 2,
    schedulers: int = 1,
    poison: tuple[str, ...] = (),
) -> Row:
    """Enroll, start the processes, inject the faults, settle, audit, report."""
    stack.enroll(PEOPLE)
    if poison:
        stack.cluster.env["OUTREACH_CHAOS_POISON"] = ",".join(str(stack.ids[p]) for p in poison)
    for n in range(workers):
        stack.cluster.worker(f"worker-{n}")
    for n in range(schedulers):
        stack.cluster.scheduler(f"scheduler-{n}")
    stack.cluster.start()
    stack.wait_for_mail()
    faults(stack)
    stack.fault_end = stack.fault_end or time.monotonic()
    row = audit(stack, scenario, stack.settle())
    report.append(row)
    assert row.duplicates == 0, row.problems[:20]
    assert row.lost == 0, row.problems[:20]
    assert row.after_stop == 0, row.problems[:20]
    return row


def delivered_share(stack: Stack, share: float) -> None:
    """Wait until a share of all the mail has arrived."""
    stack.wait_for_mail(int(len(stack.people) * 2 * share), seconds=120)


def test_workers_sigkilled_at_random_moments(stack: Stack, report: list[Row]) -> None:
    def faults(s: Stack) -> None:
        for _ in range(KILLS):
            time.sleep(s.rng.uniform(0.6, 1.4))
            s.cluster.signal(s.rng.choice(s.cluster.names("worker")))
        s.faults.append(f"{s.cluster.kills['SIGKILL']} worker SIGKILLs")

    run(stack, report, "workers SIGKILLed", faults)
    assert stack.cluster.kills["SIGKILL"] >= 10
    # every line the actors wrote says which enrollment (and send) it is about
    lines = [
        line
        for path in stack.cluster.logs.glob("worker-*.log")
        for line in path.read_text(errors="replace").splitlines()
        if "logger=outreach.actors" in line
    ]
    assert lines, "the workers logged their sends"
    assert all(" enrollment=" in line or " enrollments=" in line for line in lines)
    assert any(" send=" in line and 'msg="sent: <' in line for line in lines)


def test_schedulers_sigkilled_several_running(stack: Stack, report: list[Row]) -> None:
    def faults(s: Stack) -> None:
        schedulers = s.cluster.names("scheduler")
        for n in range(KILLS):
            time.sleep(s.rng.uniform(0.4, 1.0))
            for name in schedulers if n % 4 == 3 else [s.rng.choice(schedulers)]:
                s.cluster.signal(name)
        s.faults.append(f"3 schedulers, {s.cluster.kills['SIGKILL']} SIGKILLs")

    run(stack, report, "schedulers SIGKILLed", faults, schedulers=3)


@pytest.mark.parametrize(
    ("scenario", "down"), [("Redis restarted", 0), ("Redis down 30 s", 30)], ids=["restart", "30s"]
)
def test_redis_restarted_mid_run(
    stack: Stack, report: list[Row], scenario: str, down: float
) -> None:
    def faults(s: Stack) -> None:
        delivered_share(s, 0.25)
        restart_redis(down_seconds=down)
        s.fault_end = time.monotonic()
        s.faults.append(f"Redis {'down 30 s' if down else 'restarted'}, queue lost")

    run(stack, report, scenario, faults)


def test_postgres_restarted_mid_run(stack: Stack, report: list[Row]) -> None:
    def faults(s: Stack) -> None:
        delivered_share(s, 0.25)
        restart_postgres()
        s.fault_end = time.monotonic()
        s.app.engine.dispose()
        s.faults.append("PostgreSQL restarted (fast)")

    run(stack, report, "PostgreSQL restarted", faults)


def test_smtp_server_misbehaving(stack: Stack, report: list[Row]) -> None:
    bad = {f"p{i}@example.com" for i in range(0, PEOPLE, 50)}
    for address in bad:
        stack.sink.refuse[address] = "550 5.1.1 No such user"
    phase = 2.0 if SCALE == "full" else 1.5

    def faults(s: Stack) -> None:
        sink = s.sink
        delivered_share(s, 0.1)
        sink.refuse_connections()
        time.sleep(phase)
        sink.listen()
        time.sleep(phase)
        for command, answer in (
            ("MAIL", "421 4.3.2 Service shutting down"),
            ("RCPT", "451 4.7.1 Greylisted, try again later"),
        ):
            sink.replies[command] = answer
            time.sleep(phase)
            sink.replies.clear()
            time.sleep(phase)
        sink.hang["DATA"] = 5.0  # longer than the client's 3 s timeout: no final answer
        time.sleep(0.5)
        sink.hang["DATA"] = sink.latency
        time.sleep(phase)
        sink.drop_after_data = True  # taken, then the connection drops: the ambiguous case
        time.sleep(0.3)
        sink.drop_after_data = False
        s.faults.append(
            f"refused, 421, 451, hang in DATA, drop after DATA; 550 for {len(bad)} recipients"
        )

    row = run(stack, report, "SMTP misbehaving", faults)
    assert row.failed == len(bad), "each 550 recipient failed its first step, visibly"
    assert row.unknown > 0, "the hang and the drop after DATA left visible unknowns"


def test_replies_and_unsubscribes_while_dispatching(stack: Stack, report: list[Row]) -> None:
    stopping = threading.Event()

    def answer(s: Stack) -> None:
        """Answer step one of every third person as soon as it arrives."""
        seen = 0
        while not stopping.is_set():
            messages = s.sink.messages[seen:]
            seen += len(messages)
            for message in messages:
                rcpt = message.rcpt_tos[0]
                number = int(rcpt[1:].split("@")[0])
                if b"Chaos step 1" not in message.data or number % 3:
                    continue
                text = "Please remove me from your list." if number % 2 else "Sounds good, call me."
                raw = reply(rcpt, message_id(message.data) or "", text, number)
                ingest(s.app, raw, datetime.now(UTC), source="chaos")
                s.stopped_at[rcpt] = time.monotonic()
            time.sleep(0.01)

    def faults(s: Stack) -> None:
        responder = threading.Thread(target=answer, args=(s,), daemon=True)
        s.fault_end = time.monotonic()  # the answers are the faults: settling counts from here
        responder.start()
        s.settle()
        stopping.set()
        responder.join()
        s.faults.append(f"{len(s.stopped_at)} replies and unsubscribes racing step two")

    row = run(stack, report, "replies during dispatch", faults)
    assert len(stack.stopped_at) >= PEOPLE // 3 - 1
    assert row.delivered < 2 * PEOPLE, "some second steps were stopped by the answers"


def reply(to: str, in_reply_to: str, text: str, number: int) -> bytes:
    """A prospect's answer to a step, threaded on it."""
    return (
        f"From: <{to}>\r\nTo: Ann <ann@acme.example>\r\nSubject: Re: Chaos step 1\r\n"
        f"Message-ID: <answer-{number}@example.com>\r\nIn-Reply-To: {in_reply_to}\r\n"
        f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    ).encode()


def test_poison_message_is_parked_after_bounded_crashes(stack: Stack, report: list[Row]) -> None:
    poison = "p7@example.com"

    def faults(s: Stack) -> None:
        deadline = time.monotonic() + 120
        while not crashes.parked(s.app) and time.monotonic() < deadline:
            time.sleep(0.5)
        s.faults.append(f"1 step that SIGKILLs its worker: {s.cluster.deaths()} deaths")

    row = run(stack, report, "poison message", faults, poison=(poison,))
    parked = crashes.parked(stack.app)
    assert [e.id for e in parked] == [stack.ids[poison]]
    assert row.parked == 1
    deaths = stack.cluster.deaths()
    assert stack.app.settings.max_crashes <= deaths <= stack.app.settings.max_crashes + 2


def test_workers_stopped_gracefully_with_sigterm(stack: Stack, report: list[Row]) -> None:
    def faults(s: Stack) -> None:
        deadline = time.monotonic() + 120
        while s.cluster.kills["SIGTERM"] < 6 and time.monotonic() < deadline:
            time.sleep(s.rng.uniform(1.0, 2.0))
            s.cluster.signal(s.rng.choice(s.cluster.names("worker")), sig=SIGTERM)
        while s.cluster.stopping and time.monotonic() < deadline:
            time.sleep(0.2)  # the last ones told to stop finish what they hold, then exit
        s.faults.append(f"{s.cluster.kills['SIGTERM']} worker SIGTERMs")

    row = run(stack, report, "workers SIGTERMed", faults)
    assert row.unknown == 0, "a graceful stop finishes its sends: nothing is left unknown"
    exits = [
        code for name in stack.cluster.names("worker") for code in stack.cluster.procs[name].exits
    ]
    # 0: stopped gracefully; -SIGTERM: told to stop while still starting, before Dramatiq
    # had its handler in place (nothing was in hand yet)
    assert len(exits) >= 6 and set(exits) <= {0, -SIGTERM}, exits
