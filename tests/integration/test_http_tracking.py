"""Tracking over a real uvicorn: the email's pixel and links, fetched as a mail client would."""

from __future__ import annotations

import asyncio
import email
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from outreach import reports, service, tracking
from outreach.app import App, build_app
from outreach.clock import utcnow
from outreach.db import transaction
from outreach.models import CallTask, Event, EventType, Prospect
from outreach.runtime import start
from outreach.web.server import create_app
from tests.conftest import make_settings, write_sequence, write_template
from tests.conftest_http import serving

BASE = "https://outreach.example"
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SEQUENCE = """
name: Tracked
sender:
  from: "Ann Rep <ann@acme.example>"
  address: "Acme AB, Box 1, 111 22 Stockholm"
schedule:
  timezone: UTC
  window: "00:00-24:00"
  days: [mon, tue, wed, thu, fri, sat, sun]
engagement: {open: 1, click: 3, reply: 10, threshold: 4}
tracking: true
steps:
  - email:
      template: hello
"""
HTML = """<html><body>
<p>Hi {{ prospect.first_name }}, <a href="https://acme.example/pricing?plan=pro&amp;x=1">our
prices</a>.</p>
</body></html>
"""


def _prepare(workdir: Path) -> None:
    write_template(workdir, "hello", "Hi {{ prospect.first_name }}, https://acme.example/\n")
    (workdir / "templates" / "hello.html.j2").write_text(HTML)
    write_sequence(workdir, "tracked", SEQUENCE)


@pytest.fixture(params=["sqlite", "postgresql"])
def tracked_app(request: pytest.FixtureRequest, workdir: Path) -> Iterator[App]:
    _prepare(workdir)
    overrides: dict[str, object] = {}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    app = build_app(make_settings(workdir, **overrides))
    yield app
    app.close()


def _send(app: App, address: str, ago: timedelta) -> EmailMessage:
    """Enroll `address` and send its email `ago` before now; the message from the outbox."""
    when = utcnow() - ago
    with transaction(app.engine) as session:
        session.add(
            Prospect(email=address, first_name="Eva", created_at=when, updated_at=when, fields={})
        )
    service.enroll_many(app, "tracked", [address], when)
    runtime = start(app, threads=2)
    try:
        runtime.tick(when, simulated=True)
    finally:
        runtime.close()
    for path in sorted(app.settings.outbox_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if address in str(message["To"]):
            return message  # type: ignore[return-value]
    raise AssertionError(f"nothing sent to {address}")


def _links(message: EmailMessage, server: str) -> tuple[str, str]:
    part = message.get_body(("html",))
    assert part is not None
    html = str(part.get_content())  # type: ignore[attr-defined]
    [pixel] = re.findall(r'<img src="([^"]+)" width="1" height="1" alt="">', html)
    [link] = re.findall(r'href="(https://outreach\.example/t/c/[^"]+)"', html)
    assert pixel.startswith(f"{BASE}/t/o/")
    return pixel.replace(BASE, server), link.replace(BASE, server)


def _events(app: App, type_: EventType) -> list[Event]:
    with transaction(app.engine) as session:
        query = sa.select(Event).where(Event.type == type_).order_by(Event.id)  # type: ignore[arg-type]
        return list(session.scalars(query))


def test_the_pixel_and_the_link_of_a_sent_email(tracked_app: App) -> None:
    app = tracked_app
    message = _send(app, "eva@volvo.example", ago=timedelta(hours=2))
    with serving(app) as server, httpx.Client(follow_redirects=False, timeout=5) as client:
        pixel, link = _links(message, server)
        person = {"User-Agent": CHROME}

        opened = client.get(pixel, headers=person)
        assert opened.status_code == 200
        assert opened.headers["content-type"] == "image/gif"
        assert opened.headers["cache-control"].startswith("no-store")
        assert opened.content == tracking.PIXEL

        clicked = client.get(link, headers=person)
        assert clicked.status_code == 302
        assert clicked.headers["location"] == "https://acme.example/pricing?plan=pro&x=1"
        assert clicked.headers["referrer-policy"] == "no-referrer"

        # Apple's proxy fetches the pixel too; a link checker sends HEAD
        assert client.get(pixel, headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
        assert client.head(link, headers=person).status_code == 302

        # forged and altered tokens: 404, nothing recorded
        token = link.rsplit("/", 1)[1]
        body, _, tag = token.partition(".")
        altered = f"{server}/t/c/{body[:-3]}abc.{tag}"
        for bad in (altered, f"{server}/t/c/not-a-token", pixel.replace("/t/o/", "/t/c/")):
            assert client.get(bad, headers=person).status_code == 404, bad
        bad_pixel = client.get(f"{server}/t/o/x.y", headers=person)
        assert bad_pixel.status_code == 404
        assert bad_pixel.headers["content-type"] == "image/gif"

        tracking.flush(app)

    opens = _events(app, EventType.OPENED)
    assert [e.data.get("machine") for e in opens] == [None, "apple_mpp"]
    [click] = _events(app, EventType.CLICKED)
    assert "machine" not in click.data
    assert click.data["url"] == "https://acme.example/pricing?plan=pro&x=1"
    assert (click.step, click.sequence_id) == (1, "tracked")
    with transaction(app.engine) as session:
        assert session.scalars(sa.select(Prospect.score)).one() == 1 + 3
        [task] = session.scalars(sa.select(CallTask)).all()
        assert task.reason == "engaged"
        [row] = reports.stats(session, "tracked")
    assert (row["sent"], row["opened"], row["clicked"]) == (1, 1, 1)


def test_a_click_right_after_delivery_is_a_scanner(tracked_app: App) -> None:
    app = tracked_app
    message = _send(app, "bo@volvo.example", ago=timedelta(seconds=1))
    with serving(app) as server:
        _, link = _links(message, server)
        answer = httpx.get(link, headers={"User-Agent": CHROME}, follow_redirects=False)
        assert answer.status_code == 302
        tracking.flush(app)
    [click] = _events(app, EventType.CLICKED)
    assert click.data["machine"] == "scanner"
    with transaction(app.engine) as session:
        assert session.scalars(sa.select(Prospect.score)).one() == 0
        [row] = reports.stats(session, "tracked")
    assert row["clicked"] == 0


def test_hits_are_written_when_the_app_shuts_down(workdir: Path) -> None:
    _prepare(workdir)
    app = build_app(make_settings(workdir))
    try:
        message = _send(app, "eva@volvo.example", ago=timedelta(hours=2))
        pixel, _ = _links(message, "http://testserver")
        web = create_app(app)
        # a recorder whose thread would wait a minute: only the shutdown can write in time
        slow = web.state.tracking_recorder = tracking.Recorder(app, interval=60)

        async def serve_then_stop() -> None:
            async with web.router.lifespan_context(web):  # as uvicorn runs the app's lifespan
                transport = httpx.ASGITransport(app=web)
                async with httpx.AsyncClient(transport=transport) as client:
                    for _ in range(3):
                        answer = await client.get(pixel, headers={"User-Agent": CHROME})
                        assert answer.status_code == 200
                assert slow.pending() == 3

        # in a thread of its own: another test's event loop may be running in this one
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(serve_then_stop())
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        worker.join(60)
        assert errors == []
        assert slow.pending() == 0
        assert len(_events(app, EventType.OPENED)) == 3
    finally:
        app.close()
