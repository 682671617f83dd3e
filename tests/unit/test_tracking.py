"""Open and click tracking on SQLite: rewriting, tokens, machines, points and the recorder."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach import reports, service, tokens, tracking
from outreach.app import App
from outreach.compose import compose
from outreach.db import transaction
from outreach.models import CallTask, Enrollment, Event, EventType, Prospect
from tests.conftest import add_prospect, outbox, write_sequence, write_template
from tests.conftest import run_ticks as run

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE = "https://outreach.example"
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
HOME_IP = "198.51.100.7"

HTML = """<!doctype html>
<html><head><link rel="stylesheet" href="https://fonts.example/css"></head>
<body>
<p>Hi {{ prospect.first_name }},</p>
<p><a href="https://acme.example/pricing?a=1&amp;b=2">pricing</a>
<a class="x" title="a > b" href='http://acme.example/demo'>demo</a>
<a href="javascript:alert(1)">js</a> <a href="mailto:ann@acme.example">mail</a>
<a href="//evil.example/x">relative</a> <a href="#top">top</a>
<a href="{{ unsubscribe_url }}">leave</a></p>
<p>The text https://acme.example/plain stays as it is.</p>
</body></html>
"""


def _sequence_yaml(tracking_on: bool, threshold: int = 4) -> str:
    return f"""
        name: Tracked
        sender:
          from: "Ann Rep <ann@acme.example>"
          address: "Acme AB, Box 1, 111 22 Stockholm"
        schedule:
          timezone: UTC
          window: "00:00-24:00"
          days: [mon, tue, wed, thu, fri, sat, sun]
        engagement: {{open: 1, click: 3, reply: 10, threshold: {threshold}}}
        tracking: {str(tracking_on).lower()}
        steps:
          - email:
              template: hello
          - wait: 1 day
          - email:
              template: hello
        """


def write_html(workdir: Path, name: str, body: str) -> None:
    (workdir / "templates" / f"{name}.html.j2").write_text(body)


@pytest.fixture
def tracked(app: App, workdir: Path) -> str:
    write_template(workdir, "hello", "Hi {{ prospect.first_name }}, see https://acme.example/\n")
    write_html(workdir, "hello", HTML)
    write_sequence(workdir, "tracked", _sequence_yaml(True))
    write_sequence(workdir, "plain", _sequence_yaml(False))
    return "tracked"


def add(app: App, address: str) -> None:
    add_prospect(app, address, first_name="Eva", company="Volvo")


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def tokens_in(html: str) -> tuple[str, list[str]]:
    [pixel] = re.findall(r'<img src="https://outreach\.example/t/o/([\w.-]+)"', html)
    return pixel, re.findall(r"href=[\"']https://outreach\.example/t/c/([\w.-]+)", html)


def _compose(app: App, sequence_id: str, enrollment_id: int = 7) -> tuple[str | None, str]:
    sequence = app.sequence(sequence_id)
    person = Prospect(email="eva@volvo.example", first_name="Eva", company="Volvo", fields={})
    composed = compose(
        app,
        sequence=sequence,
        step=sequence.step(1),
        template="hello",
        prospect=person,
        sender="Ann Rep <ann@acme.example>",
        enrollment_id=enrollment_id,
        earlier=[],
        now=MONDAY_9,
    )
    return composed.email.html, composed.email.text


# --- rewriting ---------------------------------------------------------------------------


def test_without_tracking_the_email_is_exactly_the_template(app: App, tracked: str) -> None:
    sequence = app.sequence("plain")
    html, text = _compose(app, "plain")
    unsubscribe = f"{BASE}/u/{tokens.sign('u:7:1', app.secret)}"
    rendered = app.renderer.render(
        sequence.templates["hello"],
        {
            "prospect": {"email": "eva@volvo.example", "first_name": "Eva", "company": "Volvo"},
            "sender": {"name": "Ann Rep", "email": "ann@acme.example"},
            "sequence": {"id": "plain", "name": "Tracked"},
            "step": {"number": 1},
            "unsubscribe_url": unsubscribe,
        },
    )
    assert html == rendered.html
    assert text == rendered.text
    assert "/t/" not in (html or "")


def test_tracking_rewrites_links_of_the_html_part_only(app: App, tracked: str) -> None:
    html, text = _compose(app, "tracked")
    plain_html, plain_text = _compose(app, "plain")
    assert text == plain_text  # the text part is never touched
    assert html is not None and plain_html is not None
    pixel, clicks = tokens_in(html)
    destinations = [tracking.parse_click(t, app.secret) for t in clicks]
    assert destinations == [
        (7, 1, "https://acme.example/pricing?a=1&b=2"),  # the link as a browser reads it
        (7, 1, "http://acme.example/demo"),
    ]
    assert tracking.parse_open(pixel, app.secret) == (7, 1)
    # the quote style of each attribute is kept
    assert f"href='{BASE}/t/c/{clicks[1]}'" in html
    # untouched: the stylesheet, non-http links, a relative URL, the unsubscribe link, text
    for kept in (
        'href="https://fonts.example/css"',
        'href="javascript:alert(1)"',
        'href="mailto:ann@acme.example"',
        'href="//evil.example/x"',
        'href="#top"',
        f'href="{BASE}/u/',
        "The text https://acme.example/plain stays",
    ):
        assert kept in html, kept
    # the pixel goes just before </body>
    assert html.index(f'<img src="{BASE}/t/o/{pixel}" width="1" height="1" alt="">') < html.index(
        "</body>"
    )
    assert html.replace(pixel, "").count("<img") == 1


def test_pixel_goes_at_the_end_without_a_body_tag(app: App) -> None:
    html = tracking.track_html(
        '<p><A HREF="HTTPS://acme.example/x">x</A></p>',
        base_url=BASE + "/",
        secret=app.secret,
        enrollment_id=1,
        step=2,
        unsubscribe_url=f"{BASE}/u/abc",
    )
    assert html.startswith(f'<p><A HREF="{BASE}/t/c/')
    assert html.endswith('width="1" height="1" alt="">')
    [click] = re.findall(r"/t/c/([\w.-]+)", html)
    assert tracking.parse_click(click, app.secret) == (1, 2, "HTTPS://acme.example/x")


def test_the_same_link_twice_gets_the_same_token(app: App) -> None:
    html = tracking.track_html(
        '<a href="https://a.example/">1</a><a href="https://a.example/">2</a>',
        base_url=BASE,
        secret=app.secret,
        enrollment_id=1,
        step=1,
        unsubscribe_url="",
    )
    first, second = re.findall(r"/t/c/([\w.-]+)", html)
    assert first == second


def test_plain_text_email_with_tracking_is_not_changed(app: App, workdir: Path) -> None:
    write_template(workdir, "hello", "Hi {{ prospect.first_name }}, https://acme.example/\n")
    write_sequence(workdir, "tracked", _sequence_yaml(True))
    html, text = _compose(app, "tracked")
    assert html is None
    assert text == "Hi Eva, https://acme.example/\n"


# --- tokens ------------------------------------------------------------------------------


def _alter_url(token: str, url: str) -> str:
    body, _, tag = token.partition(".")
    payload = tokens._unb64(body).decode()
    kind, eid, step, _old = payload.split(":", 3)
    return tokens._b64(f"{kind}:{eid}:{step}:{url}".encode()) + "." + tag


def test_forged_altered_and_misused_tokens_are_refused(app: App) -> None:
    genuine = tracking.click_token(app.secret, 5, 1, "https://acme.example/")
    assert tracking.parse_click(genuine, app.secret) == (5, 1, "https://acme.example/")
    altered = _alter_url(genuine, "https://evil.example/")
    flipped = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
    other_key = tracking.click_token("another-secret", 5, 1, "https://acme.example/")
    for bad in (altered, flipped, other_key, "", ".", "x.y", "%00", genuine + "x"):
        assert tracking.parse_click(bad, app.secret) is None, bad
    # an open token is not a click token, nor the reverse, nor an unsubscribe token
    opened = tracking.open_token(app.secret, 5, 1)
    assert tracking.parse_click(opened, app.secret) is None
    assert tracking.parse_open(genuine, app.secret) is None
    assert tracking.parse_open(tokens.sign("u:5:1", app.secret), app.secret) is None
    assert tracking.parse_open(tokens.sign("o:x:1", app.secret), app.secret) is None


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "//evil.example/",
        "data:text/html,<script>alert(1)</script>",
        "https:///evil.example",
        "https://evil.example\\@acme.example/",
        "https://acme.example/\r\nSet-Cookie: a=b",
        "https://acme.example/ x",
        "ftp://acme.example/",
        "/relative",
    ],
)
def test_signed_but_unsafe_destinations_are_refused(app: App, url: str) -> None:
    token = tracking.click_token(app.secret, 5, 1, url)
    assert tracking.parse_click(token, app.secret) is None
    assert tracking.record_click(app, token, CHROME, HOME_IP, MONDAY_9) is None


def test_machines_are_recognised() -> None:
    reason = tracking.machine_reason
    assert reason("open", "Mozilla/5.0", HOME_IP) == "apple_mpp"
    assert reason("open", CHROME, "17.58.1.1") == "apple_mpp"
    assert reason("open", CHROME, "::ffff:17.58.1.1") == "apple_mpp"
    assert reason("open", CHROME, "170.1.1.1") is None
    assert reason("open", GMAIL, "66.249.1.1") is None  # Gmail fetches when the person opens
    assert reason("open", OUTLOOK, HOME_IP) is None  # Outlook desktop showing images
    assert reason("click", OUTLOOK, HOME_IP) == "bot"  # Office checking a link first
    assert reason("click", CHROME, "17.58.1.1") is None
    assert reason("open", None, HOME_IP) == "no_user_agent"
    for agent in (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Proofpoint URL Defense",
        "Mimecast-Scanner/1.0",
        "Barracuda Sentinel (EE)",
        "python-requests/2.32.3",
        "curl/8.5.0",
        "Go-http-client/1.1",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "facebookexternalhit/1.1",
        "Microsoft Office Existence Discovery",
    ):
        assert reason("click", agent, HOME_IP) == "bot", agent
    assert reason("open", CHROME, HOME_IP) is None


# --- recording ---------------------------------------------------------------------------


@pytest.fixture
def eva(app: App, tracked: str) -> tuple[str, list[str]]:
    """Eva enrolled in the tracked sequence; her first email went out on Monday at 9."""
    add(app, "eva@volvo.example")
    service.enroll_many(app, tracked, ["eva@volvo.example"], MONDAY_9)
    run(app, MONDAY_9)
    [first] = outbox(app)
    return tokens_in(html_of(first))


def tracked_events(app: App, type_: EventType) -> list[Event]:
    with transaction(app.engine) as session:
        return list(
            session.scalars(
                sa.select(Event).where(Event.type == type_).order_by(Event.id)  # type: ignore[arg-type]
            )
        )


def score(app: App) -> int:
    with transaction(app.engine) as session:
        return session.scalars(sa.select(Prospect.score)).one()


def call_tasks(app: App) -> list[CallTask]:
    with transaction(app.engine) as session:
        return list(session.scalars(sa.select(CallTask)))


def test_a_person_opening_earns_points_once_per_email(app: App, eva: tuple[str, list[str]]) -> None:
    pixel, _ = eva
    later = MONDAY_9 + timedelta(hours=1)
    assert tracking.record_open(app, pixel, GMAIL, "66.249.1.1", later)
    assert tracking.record_open(app, pixel, CHROME, HOME_IP, later + timedelta(minutes=5))
    opens = tracked_events(app, EventType.OPENED)
    assert len(opens) == 2  # a replayed pixel is another open...
    assert score(app) == 1  # ...but the email earns its open points once
    [enrollment] = _enrollments(app)
    assert {(e.enrollment_id, e.step, e.sequence_id) for e in opens} == {
        (enrollment.id, 1, "tracked")
    }
    assert all("machine" not in e.data for e in opens)
    assert opens[0].data["user_agent"] == GMAIL
    assert opens[0].at == later


def test_machine_opens_are_recorded_without_points(app: App, eva: tuple[str, list[str]]) -> None:
    pixel, _ = eva
    later = MONDAY_9 + timedelta(hours=1)
    assert tracking.record_open(app, pixel, "Mozilla/5.0", "104.28.1.1", later)
    assert tracking.record_open(app, pixel, CHROME, "17.1.2.3", later)
    assert tracking.record_open(app, pixel, "Proofpoint", "52.1.1.1", later)
    opens = tracked_events(app, EventType.OPENED)
    assert [e.data["machine"] for e in opens] == ["apple_mpp", "apple_mpp", "bot"]
    assert score(app) == 0
    with _session(app) as session:
        [row] = reports.stats(session)
    assert (row["sent"], row["opened"], row["clicked"]) == (1, 0, 0)


def test_bad_tokens_record_nothing(app: App, eva: tuple[str, list[str]]) -> None:
    pixel, clicks = eva
    assert not tracking.record_open(app, pixel[:-2] + "AA", CHROME, HOME_IP, MONDAY_9)
    assert tracking.record_click(app, clicks[0] + "x", CHROME, HOME_IP, MONDAY_9) is None
    assert tracking.record_click(app, pixel, CHROME, HOME_IP, MONDAY_9) is None
    assert not tracked_events(app, EventType.OPENED)
    assert not tracked_events(app, EventType.CLICKED)


def test_clicks_scanners_people_and_the_call_queue(app: App, eva: tuple[str, list[str]]) -> None:
    _, clicks = eva
    # a link scanner follows the link seconds after delivery
    url = tracking.record_click(app, clicks[0], CHROME, HOME_IP, MONDAY_9 + timedelta(seconds=8))
    assert url == "https://acme.example/pricing?a=1&b=2"
    assert score(app) == 0
    # the person, later: 3 points, and the open it implies is not assumed
    later = MONDAY_9 + timedelta(hours=2)
    assert tracking.record_click(app, clicks[1], CHROME, HOME_IP, later) == (
        "http://acme.example/demo"
    )
    assert score(app) == 3
    assert not call_tasks(app)
    # another click of the same email earns nothing more
    tracking.record_click(app, clicks[0], CHROME, HOME_IP, later + timedelta(minutes=1))
    assert score(app) == 3
    # the open reaches the threshold of 4: flagged for a call, once
    pixel, _ = eva
    tracking.record_open(app, pixel, CHROME, HOME_IP, later + timedelta(minutes=2))
    assert score(app) == 4
    [task] = call_tasks(app)
    assert (task.reason, task.status) == ("engaged", "open")
    # the second email's open adds a point; no second task while one is open
    run(app, MONDAY_9 + timedelta(days=1))
    second_pixel, _ = tokens_in(html_of(outbox(app)[-1]))
    assert tracking.parse_open(second_pixel, app.secret) is not None
    assert second_pixel != pixel
    tracking.record_open(app, second_pixel, CHROME, HOME_IP, MONDAY_9 + timedelta(days=1, hours=1))
    assert score(app) == 5
    assert len(call_tasks(app)) == 1
    assert len(tracked_events(app, EventType.CALL_TASK)) == 1

    found = tracked_events(app, EventType.CLICKED)
    assert [e.data.get("machine") for e in found] == ["scanner", None, None]
    assert found[1].data["url"] == "http://acme.example/demo"
    with _session(app) as session:
        rows = {row["step"]: row for row in reports.stats(session, "tracked")}
    assert (rows[1]["opened"], rows[1]["clicked"]) == (1, 1)
    assert (rows[2]["sent"], rows[2]["opened"], rows[2]["clicked"]) == (1, 1, 0)


def test_scanner_window_follows_the_setting(app: App, eva: tuple[str, list[str]]) -> None:
    _, clicks = eva
    app.settings.scanner_seconds = 5
    tracking.record_click(app, clicks[0], CHROME, HOME_IP, MONDAY_9 + timedelta(seconds=8))
    assert score(app) == 3


def test_hits_of_unknown_enrollments_are_not_recorded(app: App, eva: tuple[str, list[str]]) -> None:
    stranger = tracking.open_token(app.secret, 999, 1)  # e.g. from `outreach preview`
    assert tracking.record_open(app, stranger, CHROME, HOME_IP, MONDAY_9)
    assert not tracked_events(app, EventType.OPENED)


# --- the recorder ------------------------------------------------------------------------


def test_recorder_writes_in_the_background_and_on_flush(
    app: App, eva: tuple[str, list[str]]
) -> None:
    pixel, clicks = eva
    recorder = tracking.Recorder(app, interval=0.05, batch_size=3, idle_seconds=0.2)
    later = MONDAY_9 + timedelta(hours=1)
    hits = [tracking.open_hit(app.secret, pixel, CHROME, HOME_IP, later) for _ in range(5)]
    hits.append(tracking.click_hit(app.secret, clicks[0], CHROME, HOME_IP, later))
    hits.append(
        tracking.open_hit(app.secret, tracking.open_token(app.secret, 999, 1), "", "", later)
    )
    for hit in hits:
        assert hit is not None
        recorder.submit(hit)
    deadline = time.monotonic() + 5
    while recorder.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    tracking.flush(app)
    assert recorder.pending() == 0
    assert recorder.recorded == 6  # the unknown enrollment's open is not recorded
    assert len(tracked_events(app, EventType.OPENED)) == 5
    assert score(app) == 1 + 3
    # the thread ends when idle and starts again with the next hit
    deadline = time.monotonic() + 5
    while recorder._running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not recorder._running
    recorder.submit(hits[0])  # type: ignore[arg-type]
    assert recorder._running
    recorder.close()
    assert len(tracked_events(app, EventType.OPENED)) == 6


def test_a_failing_batch_is_retried_hit_by_hit(
    app: App, eva: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pixel, _ = eva
    real = tracking.write

    def picky(app_: App, hits: list[tracking.Hit], memory: tracking.Memory | None = None) -> int:
        if len(hits) > 1 or hits[0].user_agent == "poison":
            raise RuntimeError("boom")
        return real(app_, hits, memory)

    monkeypatch.setattr(tracking, "write", picky)
    recorder = tracking.Recorder(app)
    for agent in (CHROME, "poison", CHROME):
        hit = tracking.open_hit(app.secret, pixel, agent, HOME_IP, MONDAY_9 + timedelta(hours=1))
        assert hit is not None
        recorder.submit(hit)
    recorder.flush()
    assert (recorder.recorded, recorder.failed) == (2, 1)
    assert len(tracked_events(app, EventType.OPENED)) == 2


def test_hits_wait_while_the_database_is_unavailable(
    app: App, eva: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pixel, _ = eva
    real = tracking.write
    down = [True]

    def flaky(app_: App, hits: list[tracking.Hit], memory: tracking.Memory | None = None) -> int:
        if down[0]:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real(app_, hits, memory)

    monkeypatch.setattr(tracking, "write", flaky)
    recorder = tracking.Recorder(app, batch_size=2)
    recorder._running = True  # no thread: this test flushes
    agents = [f"{CHROME} #{i}" for i in range(5)]
    for agent in agents:
        hit = tracking.open_hit(app.secret, pixel, agent, HOME_IP, MONDAY_9 + timedelta(hours=1))
        assert hit is not None
        recorder.submit(hit)
    assert recorder.flush() == 0
    assert (recorder.pending(), recorder.failed) == (5, 0)
    down[0] = False
    assert recorder.flush() == 5
    opens = tracked_events(app, EventType.OPENED)
    assert [e.data["user_agent"] for e in opens] == agents  # in order, none lost


def test_recorder_drops_beyond_its_limit(app: App) -> None:
    recorder = tracking.Recorder(app, max_pending=2)
    recorder._running = True  # no thread: keep everything queued
    hit = tracking.Hit("open", 1, 1, MONDAY_9, CHROME, None)
    for _ in range(3):
        recorder.submit(hit)
    assert (recorder.pending(), recorder.dropped) == (2, 1)
    recorder._pending.clear()


def _enrollments(app: App) -> list[Enrollment]:
    with transaction(app.engine) as session:
        return list(session.scalars(sa.select(Enrollment)))


def _session(app: App) -> sa.orm.Session:
    return sa.orm.Session(app.engine)
