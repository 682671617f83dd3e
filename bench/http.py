"""Tracking throughput over HTTP: the open pixel and tracked links beside bare FastAPI routes.

    python bench/http.py [--seconds 2] [--rounds 8] [--connections 32] [--prospects 200] [--pg]

One uvicorn worker process serves `create_app` (every route of `outreach serve`) plus two
bare routes on the same app: `GET /bare/o/{token}` returns the same GIF bytes and
`GET /bare/c/{token}` the same kind of 302, with no token check and no recording. The load
comes from this process (another core): keep-alive HTTP/1.1 connections on raw asyncio
sockets, lighter than any HTTP client library, so the server is what is measured. Each
round runs every tracked route right beside its bare twin for `--seconds` each (the order
alternating), over valid tokens of really sent emails (a Chrome User-Agent: people, so the
recorder scores and writes them). Reported: requests/s (medians), the ratios tracked/bare
(median of the per-round ratios: robust to neighbours on a shared machine) and the server's
CPU time per request (all its threads, the recorder's writes included: after each run the
bench waits for the server to go idle, so no run pays for the writes of the one before).
After the load the server is stopped (SIGINT: its lifespan flushes the recorder) and the
opens and clicks in the database are checked against the 200s and 302s it answered.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from email import policy
from pathlib import Path

# run as a script, this file's folder comes first on the path and `http.py` would shadow the
# standard library's `http`: move the folder last (a stable sort keeps the rest in order)
sys.path.sort(key=lambda entry: Path(entry or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil
import sqlalchemy as sa

from bench.common import fresh_database, report
from outreach.app import build_app
from outreach.clock import utcnow
from outreach.db import transaction
from outreach.models import Event, EventType, Prospect
from outreach.runtime import start
from outreach.settings import Settings

SEQUENCE = """\
name: Bench
sender:
  from: "Ann Rep <ann@acme.example>"
  address: "Acme AB, Box 1, 111 22 Stockholm"
schedule:
  timezone: UTC
  window: "00:00-24:00"
  days: [mon, tue, wed, thu, fri, sat, sun]
tracking: true
steps:
  - email:
      template: bench
"""
TEXT = "---\nsubject: Quick question\n---\nHi {{ prospect.first_name }}, https://acme.example/\n"
HTML = """<html><body><p>Hi {{ prospect.first_name }},</p>
<p>See <a href="https://acme.example/pricing?plan=pro">our prices</a> or
<a href="https://acme.example/demo">book a demo</a>.</p></body></html>
"""
BASE = "https://outreach.example"
AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def settings(work: Path, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        outbox_dir=work / "outbox",
        sequences_dir=work / "sequences",
        templates_dir=work / "templates",
        secret_key="bench-secret",
        base_url=BASE,
        _env_file=None,  # type: ignore[call-arg]
    )


def prepare(work: Path, database_url: str, prospects: int) -> dict[str, list[str]]:
    """Send one tracked email to each prospect a day ago; the paths of their pixels and links."""
    import re

    from outreach import service

    (work / "sequences").mkdir(parents=True)
    (work / "templates").mkdir()
    (work / "sequences" / "bench.yaml").write_text(SEQUENCE)
    (work / "templates" / "bench.j2").write_text(TEXT)
    (work / "templates" / "bench.html.j2").write_text(HTML)
    app = build_app(settings(work, database_url))
    when = utcnow() - timedelta(days=1)
    try:
        addresses = [f"p{i}@bench.example" for i in range(prospects)]
        with transaction(app.engine) as session:
            for address in addresses:
                session.add(
                    Prospect(
                        email=address, first_name="Pat", created_at=when, updated_at=when, fields={}
                    )
                )
        service.enroll_many(app, "bench", addresses, when)
        runtime = start(app, threads=2)
        try:
            runtime.tick(when, simulated=True)
        finally:
            runtime.close()
    finally:
        app.close()
    opens: list[str] = []
    clicks: list[str] = []
    for path in sorted((work / "outbox").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        part = message.get_body(("html",))
        raw = str(part.get_content()) if part is not None else ""  # type: ignore[attr-defined]
        opens += re.findall(re.escape(BASE) + r"(/t/o/[\w.-]+)", raw)
        clicks += re.findall(re.escape(BASE) + r"(/t/c/[\w.-]+)", raw)
    if len(opens) != prospects:
        sys.exit(f"expected {prospects} pixels in the outbox, found {len(opens)}")
    return {
        "open": opens,
        "click": clicks,
        "bare_gif": [p.replace("/t/o/", "/bare/o/") for p in opens],
        "bare_302": [p.replace("/t/c/", "/bare/c/") for p in clicks],
    }


# --- the server process ----------------------------------------------------------------


def serve(work: Path, database_url: str, port: int) -> None:
    """One uvicorn worker: outreach's app plus the two bare routes."""
    import uvicorn
    from fastapi.responses import Response

    from outreach.tracking import PIXEL
    from outreach.web.server import create_app

    app = build_app(settings(work, database_url))
    web = create_app(app)

    @web.get("/bare/o/{token}")
    async def bare_gif(token: str) -> Response:
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})

    @web.get("/bare/c/{token}")
    async def bare_redirect(token: str) -> Response:
        return Response(status_code=302, headers={"Location": "https://acme.example/pricing"})

    try:
        uvicorn.run(web, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        app.close()


# --- the load --------------------------------------------------------------------------


async def _connection(
    port: int, requests: list[bytes], offset: int, stop_at: float, counts: Counter[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    index = offset
    try:
        while time.perf_counter() < stop_at:
            writer.write(requests[index % len(requests)])
            index += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            at = head.lower().find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 : head.index(b"\r\n", at)])
                if length:
                    await reader.readexactly(length)
            counts[status] += 1
    finally:
        writer.close()


def load(
    port: int, paths: list[str], seconds: float, connections: int
) -> tuple[float, Counter[int]]:
    """Requests per second over `connections` keep-alive connections for `seconds`."""
    requests = [
        f"GET {p} HTTP/1.1\r\nHost: outreach.example\r\nUser-Agent: {AGENT}\r\n\r\n".encode()
        for p in paths
    ]
    counts: Counter[int] = Counter()

    async def run() -> float:
        start_at = time.perf_counter()
        stop_at = start_at + seconds
        step = max(1, len(requests) // connections)
        await asyncio.gather(
            *(_connection(port, requests, i * step, stop_at, counts) for i in range(connections))
        )
        return time.perf_counter() - start_at

    elapsed = asyncio.run(run())
    return sum(counts.values()) / elapsed, counts


def settle(process: psutil.Process, idle: float = 0.05, longest: float = 30.0) -> None:
    """Wait until the server has (nearly) nothing left to do: below `idle` CPU for 0.2 s."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        before = sum(process.cpu_times()[:2])
        time.sleep(0.2)
        if sum(process.cpu_times()[:2]) - before < idle * 0.2:
            return


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--prospects", type=int, default=200)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--serve", nargs=3, metavar=("WORK", "URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        work, url, port = args.serve
        serve(Path(work), url, int(port))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = fresh_database("outreach_bench_http") if args.pg else f"sqlite:///{work}/bench.db"
        paths = prepare(work, url, args.prospects)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(work), url, str(port)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_up(port)
            process = psutil.Process(server.pid)
            rates: dict[str, list[float]] = {t: [] for t in paths}
            cpu: dict[str, list[float]] = {t: [] for t in paths}  # server CPU µs per request
            statuses: dict[str, Counter[int]] = {t: Counter() for t in paths}
            for target in paths:  # warm up every route (and score every email once)
                statuses[target] += load(port, paths[target], 1.0, args.connections)[1]
            settle(process)
            for round_ in range(args.rounds):
                # each tracked route right beside its bare twin, the order alternating, so a
                # neighbour's load on a shared machine hits both sides of a ratio alike
                for pair in (("bare_gif", "open"), ("bare_302", "click")):
                    for target in pair if round_ % 2 == 0 else pair[::-1]:
                        before = sum(process.cpu_times()[:2])
                        rate, counts = load(port, paths[target], args.seconds, args.connections)
                        # the recorder's writes still queued are this run's cost, not the next's
                        settle(process)
                        used = sum(process.cpu_times()[:2]) - before
                        rates[target].append(rate)
                        cpu[target].append(used / max(1, sum(counts.values())) * 1e6)
                        statuses[target] += counts
                shown = ", ".join(f"{t} {r[-1]:,.0f}/s" for t, r in rates.items())
                print(f"round {round_ + 1}/{args.rounds}: {shown}", file=sys.stderr)
        finally:
            server.send_signal(signal.SIGINT)  # uvicorn shuts down: the lifespan flushes
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        # everything answered, including the warm-up, must be in the database
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            recorded = dict(
                connection.execute(
                    sa.select(Event.type, sa.func.count())  # type: ignore[call-overload]
                    .where(Event.type.in_([EventType.OPENED, EventType.CLICKED]))  # type: ignore[attr-defined]
                    .group_by(Event.type)
                ).all()
            )
        engine.dispose()

    median = {t: statistics.median(r) for t, r in rates.items()}

    def ratio(tracked: str, bare: str) -> float:
        """The median over rounds of each round's tracked/bare rate."""
        return statistics.median(t / b for t, b in zip(rates[tracked], rates[bare], strict=True))

    def cost(target: str) -> float:
        return statistics.median(cpu[target])

    figures: dict[str, object] = {
        "server": "1 uvicorn worker (h11, asyncio), FastAPI; load from another process",
        "database": "postgresql" if args.pg else "sqlite",
        "connections": args.connections,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "bare_gif_req_per_s": median["bare_gif"],
        "open_pixel_req_per_s": median["open"],
        "open_vs_bare_ratio": ratio("open", "bare_gif"),
        "bare_302_req_per_s": median["bare_302"],
        "click_req_per_s": median["click"],
        "click_vs_bare_ratio": ratio("click", "bare_302"),
        "server_cpu_us_per_req bare_gif": cost("bare_gif"),
        "server_cpu_us_per_req open": cost("open"),
        "server_cpu_us_per_req bare_302": cost("bare_302"),
        "server_cpu_us_per_req click": cost("click"),
        "open_vs_bare_cpu_ratio": cost("bare_gif") / cost("open"),
        "click_vs_bare_cpu_ratio": cost("bare_302") / cost("click"),
        "open_answers (all runs)": dict(statuses["open"]),
        "click_answers (all runs)": dict(statuses["click"]),
        "opens_recorded": recorded.get("opened", 0),
        "clicks_recorded": recorded.get("clicked", 0),
    }
    report("http_pg" if args.pg else "http", figures)
    print(json.dumps({"ratios": [figures["open_vs_bare_ratio"], figures["click_vs_bare_ratio"]]}))


if __name__ == "__main__":
    main()
