"""The chaos stack: real worker and scheduler processes on PostgreSQL and Redis, an SMTP
sink that can be told to misbehave, the faults, and the audit that ends every scenario."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from aiosmtpd.controller import Controller

from outreach import crashes, service
from outreach.app import App
from outreach.models import SendStatus
from tests.conftest_smtp import SinkHandler, SmtpSink

ROOT = Path(__file__).resolve().parents[2]
SCALE = os.environ.get("CHAOS_SCALE", "full")
# enrollments per scenario, two emails each
PEOPLE = {"full": 1500, "short": 200}[SCALE]
# the sink's delay per message: slow enough that the faults land while mail flows
LATENCY = {"full": 0.05, "short": 0.2}[SCALE]
STEPS = 2
SETTLE_SECONDS = 240
SUBJECT = re.compile(rb"^Subject: Chaos step (\d+)", re.M)
MESSAGE_ID = re.compile(rb"^Message-ID: *(<[^>\r\n]+>)", re.M | re.I)

# short leases and timeouts, so a scenario sees recovery in seconds, not minutes
SETTINGS = {
    "DISPATCH_LEASE_SECONDS": "5",
    "SEND_INFLIGHT_SECONDS": "8",
    "SMTP_TIMEOUT": "3",
    "RETRY_BACKOFF_MS": "300",
    "RETRY_LEASE_SECONDS": "15",
    "TICK_SECONDS": "0.5",
    "BATCH_SIZE": "200",
    "SEND_BATCH_SIZE": "20",
    "LOG_FORMAT": "logfmt",
}

VISIBLE_WITHOUT_SEND = {"paused", "replied", "unsubscribed", "stopped", "failed", "bounced"}


# --- the sink ------------------------------------------------------------------------


class ChaosSink(SmtpSink):
    """The test SMTP sink with a steady latency, and refusing connections on demand."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self.hang["DATA"] = latency

    def refuse_connections(self) -> None:
        """Stop listening: every connection is refused until `listen()`."""
        self.controller.stop()

    def listen(self) -> None:
        """Listen again on the same port."""
        self.controller = Controller(
            SinkHandler(self), hostname="127.0.0.1", port=self.port, server_hostname="sink.test"
        )
        self.controller.start()

    def keys(self) -> Counter[tuple[str, int]]:
        """How many times each (recipient, step) arrived."""
        return Counter((rcpt, _step(m.data)) for m in self.messages for rcpt in m.rcpt_tos)

    def first_after(self, moment: float) -> float | None:
        """When the first message after a moment arrived, if one did."""
        times = [m.at for m in list(self.messages) if m.at >= moment]
        return min(times) if times else None


def _step(data: bytes) -> int:
    match = SUBJECT.search(data)
    return int(match[1]) if match else 0


def message_id(data: bytes) -> str | None:
    """The Message-ID header of a message as it arrived."""
    match = MESSAGE_ID.search(data)
    return match[1].decode() if match else None


# --- the processes -------------------------------------------------------------------


@dataclass
class Proc:
    """One supervised process: restarted whenever it exits, as a service manager would."""

    name: str
    command: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)


class Cluster:
    """Worker and scheduler processes under a supervisor that restarts what dies."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, Proc] = {}
        self.kills = Counter[str]()
        self.stopping: set[str] = set()  # told to stop gracefully, not exited yet
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    def worker(self, name: str) -> None:
        """Add a Dramatiq worker process with the chaos module (one process, 4 threads)."""
        command = [sys.executable, "-m", "dramatiq", "tests.chaos.worker"]
        self._add(name, [*command, "--processes", "1", "--threads", "4", "--queues", "outreach"])

    def scheduler(self, name: str) -> None:
        """Add an `outreach scheduler` process."""
        self._add(name, [sys.executable, "-m", "outreach", "scheduler"])

    def start(self) -> None:
        """Start supervising."""
        self._thread.start()

    def names(self, prefix: str) -> list[str]:
        """The processes whose name starts with prefix."""
        return [name for name in self.procs if name.startswith(prefix)]

    def signal(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal a process; the supervisor restarts it once it has exited.

        SIGKILL goes to the whole process group. SIGTERM goes to the main process alone, as
        systemd's KillMode=mixed does: Dramatiq's main process passes it on to its worker
        processes, and a worker process that gets a second SIGTERM stops at once.
        """
        with self._lock:
            popen = self.procs[name].popen
            if popen is None or popen.poll() is not None or name in self.stopping:
                return  # a second SIGTERM would not be graceful: it kills the workers
            self.kills[sig.name] += 1
            if sig == signal.SIGTERM:
                self.stopping.add(name)
                os.kill(popen.pid, sig)
            else:
                os.killpg(popen.pid, sig)

    def deaths(self) -> int:
        """How many exits the supervisor has seen, killed or not."""
        return sum(len(proc.exits) for proc in self.procs.values())

    def stop(self) -> None:
        """Stop supervising and end every process: SIGTERM, then SIGKILL."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        live = [p.popen for p in self.procs.values() if p.popen and p.popen.poll() is None]
        for popen in live:
            os.killpg(popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for popen in live:
            try:
                popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()

    def _add(self, name: str, command: list[str]) -> None:
        self.procs[name] = proc = Proc(name, command, self.logs / f"{name}.log")
        self._launch(proc)

    def _launch(self, proc: Proc) -> None:
        with proc.log.open("ab") as log:
            proc.popen = subprocess.Popen(
                proc.command,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc.starts += 1
        self.stopping.discard(proc.name)

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                for proc in self.procs.values():
                    code = proc.popen.poll() if proc.popen else None
                    if code is not None:
                        proc.exits.append(code)
                        self._launch(proc)


# --- services ------------------------------------------------------------------------


def restart_redis(down_seconds: float = 0.0) -> None:
    """Shut Redis down without saving (queued messages are lost), then start it again."""
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True)
    _wait_for(lambda: not _redis_up(), 10)
    time.sleep(down_seconds)
    command = (
        "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
        "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
    )
    subprocess.run(command, shell=True, check=True, capture_output=True)
    _wait_for(_redis_up, 20)


def restart_postgres() -> None:
    """Restart the PostgreSQL cluster (fast mode: every session is cut off)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        capture_output=True,
    )


def _redis_up() -> bool:
    result = subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True)
    return result.stdout.strip() == b"PONG"


def _wait_for(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("a service did not come back")
        time.sleep(0.1)


# --- the run and its audit ---------------------------------------------------------------


@dataclass
class Row:
    """One scenario's line in the report."""

    scenario: str
    faults: str
    attempted: int = 0
    delivered: int = 0
    duplicates: int = 0
    lost: int = 0
    unknown: int = 0
    failed: int = 0
    parked: int = 0
    after_stop: int = 0
    recover_s: float | None = None
    settle_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    unknown_why: Counter[str] = field(default_factory=Counter)  # the ledger's reasons


@dataclass
class Stack:
    """Everything one scenario runs on."""

    app: App
    sink: ChaosSink
    cluster: Cluster
    people: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)  # email -> enrollment id
    stopped_at: dict[str, float] = field(default_factory=dict)  # email -> when its stop landed
    fault_end: float = 0.0
    faults: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def enroll(self, count: int, prefix: str = "p") -> None:
        """Enroll `count` new people in the chaos sequence."""
        people = [f"{prefix}{i}@example.com" for i in range(count)]
        service.enroll_many(self.app, "chaos", people, datetime.now(UTC))
        self.people += people
        with self.app.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT p.email, e.id FROM enrollment e JOIN prospect p ON p.id = e.prospect_id"
                )
            )
            self.ids.update({row.email: row.id for row in rows})

    def wait_for_mail(self, count: int = 1, seconds: float = 90) -> None:
        """Wait until the sink has taken `count` messages."""
        _wait_for(lambda: len(self.sink.messages) >= count, seconds)

    def active(self) -> int:
        """How many enrollments are still active (the engine has work left)."""
        try:
            with self.app.engine.connect() as connection:
                query = "SELECT count(*) FROM enrollment WHERE state = 'active'"
                return int(connection.execute(sa.text(query)).scalar_one())
        except sa.exc.OperationalError:
            self.app.engine.dispose()
            return -1

    def settle(self, seconds: float = SETTLE_SECONDS) -> float:
        """Wait until no enrollment is active; returns how long it took after the faults."""
        deadline = time.monotonic() + seconds
        while self.active() != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        return time.monotonic() - self.fault_end


def audit(stack: Stack, scenario: str, settle_s: float) -> Row:
    """Check every enrollment's steps against the ledger and the sink."""
    row = Row(scenario, ", ".join(stack.faults), settle_s=round(settle_s, 1))
    with stack.app.engine.connect() as connection:
        enrollments = {
            r.email: (r.state, r.reason or "")
            for r in connection.execute(
                sa.text(
                    "SELECT p.email, e.state, e.reason FROM enrollment e "
                    "JOIN prospect p ON p.id = e.prospect_id"
                )
            )
        }
        sends = list(connection.execute(sa.text("SELECT to_email, step, status, error FROM send")))
    ledger = {(r.to_email, r.step): SendStatus(r.status) for r in sends}
    row.unknown_why = Counter(
        re.sub(r"\d+", "N", (r.error or "")[:90]) for r in sends if r.status == SendStatus.UNKNOWN
    )
    arrived = stack.sink.keys()
    row.attempted = len(ledger)
    row.delivered = len(arrived)
    row.duplicates = sum(n - 1 for n in arrived.values() if n > 1)
    row.unknown = sum(1 for s in ledger.values() if s == SendStatus.UNKNOWN)
    row.failed = sum(1 for s in ledger.values() if s == SendStatus.FAILED)
    row.parked = sum(1 for _s, why in enrollments.values() if why.startswith(crashes.PARKED))
    for (email, step), count in arrived.items():
        if count > 1:
            row.problems.append(f"{email} step {step} arrived {count} times")
    lost = [
        problem for email in stack.people for problem in _lost(email, enrollments, ledger, arrived)
    ]
    row.lost = len(lost)
    row.problems += lost
    row.after_stop = _after_stop(stack)
    if row.after_stop:
        row.problems.append(f"{row.after_stop} messages arrived after their enrollment stopped")
    first = stack.sink.first_after(stack.fault_end)
    row.recover_s = None if first is None else round(first - stack.fault_end, 1)
    return row


def _lost(
    email: str,
    enrollments: dict[str, tuple[str, str]],
    ledger: dict[tuple[str, int], SendStatus],
    arrived: Counter[tuple[str, int]],
) -> list[str]:
    """What became of one enrollment's steps that nobody could see: the 'lost' column."""
    state, _why = enrollments[email]
    problems = []
    if state == "active":
        problems.append(f"{email} still active after the run")
    for step in range(1, STEPS + 1):
        status, came = ledger.get((email, step)), (email, step) in arrived
        if status == SendStatus.SENT and not came:
            problems.append(f"{email} step {step}: recorded sent, never arrived")
        elif came and status not in (SendStatus.SENT, SendStatus.UNKNOWN):
            problems.append(f"{email} step {step}: arrived, recorded {status}")
        elif status == SendStatus.SENDING or (
            status == SendStatus.DEFERRED and state not in VISIBLE_WITHOUT_SEND
        ):
            # a deferred row of a stopped enrollment is a reservation released, not sent
            problems.append(f"{email} step {step}: left {status} ({state})")
        elif status is None and state == "finished":
            problems.append(f"{email} step {step}: finished without it")
        elif status == SendStatus.UNKNOWN and state not in VISIBLE_WITHOUT_SEND:
            problems.append(f"{email} step {step}: unknown, but the enrollment is {state}")
    return problems


def _after_stop(stack: Stack) -> int:
    """Messages that arrived after their prospect's reply or unsubscribe had landed."""
    late = 0
    for message in list(stack.sink.messages):
        for rcpt in message.rcpt_tos:
            stopped = stack.stopped_at.get(rcpt)
            if stopped is not None and message.at > stopped:
                late += 1
    return late


# --- the report ----------------------------------------------------------------------

COLUMNS = (
    ("scenario", "scenario"),
    ("faults", "faults injected"),
    ("attempted", "sends attempted"),
    ("delivered", "delivered"),
    ("duplicates", "duplicates"),
    ("lost", "lost"),
    ("unknown", "unknown"),
    ("failed", "failed (5xx)"),
    ("parked", "parked"),
    ("after_stop", "sent after stop"),
    ("recover_s", "first delivery after the faults (s)"),
    ("settle_s", "all settled after the faults (s)"),
)


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table, then why the unknown sends are unknown."""
    head = "| " + " | ".join(title for _key, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, rule]
    for row in rows:
        cells = ["" if getattr(row, key) is None else str(getattr(row, key)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Why the `unknown` sends are unknown, as the ledger says:", ""]
    for row in rows:
        for why, count in row.unknown_why.most_common():
            lines.append(f"- {row.scenario}: {count}: {why}")
    return "\n".join(lines)
