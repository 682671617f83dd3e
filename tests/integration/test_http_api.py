"""The HTTP API over real uvicorn and PostgreSQL: tokens, refusals, webhook, unsubscribe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from outreach import service
from outreach.app import App, build_app
from outreach.compose import unsubscribe_token
from outreach.db import transaction
from outreach.models import Enrollment, EnrollmentState, Event, EventType, Send, Suppression
from outreach.runtime import start
from tests.conftest import make_settings, write_blast
from tests.conftest_http import TOKEN, serving

NOW = "2026-03-03T12:00:00Z"
WHEN = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
SECRET = "hook-secret"


@pytest.fixture
def pg_app(workdir: Path, pg_url: str) -> Iterator[App]:
    write_blast(workdir, steps=2)
    settings = make_settings(
        workdir,
        database_url=pg_url,
        api_tokens=f"other-token,{TOKEN}",
        inbound_secret=SECRET,
        inbound_max_bytes=200_000,
    )
    app = build_app(settings)
    yield app
    app.close()


http_base: list[str] = []


@pytest.fixture
def http(pg_app: App) -> Iterator[httpx.Client]:
    with serving(pg_app) as base:
        http_base.clear()
        http_base.append(base)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            yield client


def test_tokens_401_without_403_wrong_200_right(http: httpx.Client) -> None:
    bare = httpx.get(f"{http_base[0]}/api/calls")
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(f"{http_base[0]}/api/calls", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert http.get("/api/calls").json() == []
    assert http.get("/docs").status_code == 200
    assert "/api/enroll" in http.get("/openapi.json").json()["paths"]


def test_enroll_and_import_refuse_with_reasons_and_keep_the_rest(http: httpx.Client) -> None:
    done = http.post(
        f"/api/enroll?now={NOW}", json={"sequence": "blast", "emails": ["ann@example.com"]}
    )
    assert done.status_code == 200 and done.json()["enrolled"] == ["ann@example.com"]
    again = http.post(
        f"/api/enroll?now={NOW}",
        json={"sequence": "blast", "emails": ["ann@example.com", "bo@example.com", "nope"]},
    )
    assert again.status_code == 422
    body = again.json()
    assert body["enrolled"] == ["bo@example.com"]
    reasons = {r["email"]: r["reason"] for r in body["refused"]}
    assert reasons["ann@example.com"] == "ann@example.com is already active in blast"
    assert "nope" in reasons
    unknown = http.post("/api/enroll", json={"sequence": "nosuch", "emails": ["a@example.com"]})
    assert unknown.status_code == 404 and "nosuch" in unknown.json()["error"]
    naive = http.post(
        "/api/enroll?now=2026-03-03T12:00", json={"sequence": "blast", "emails": ["c@x.example"]}
    )
    assert naive.status_code == 400
    csv = "email,first_name\ncy@example.com,Cy\nnot-an-address,X\n"
    imported = http.post(
        f"/api/import?now={NOW}", content=csv, headers={"Content-Type": "text/csv"}
    )
    assert imported.status_code == 422
    assert imported.json()["imported"] == 1
    assert [r["line"] for r in imported.json()["refused"]] == [3]


def test_prospect_pause_resume_stop_unsubscribe_and_stats(http: httpx.Client, pg_app: App) -> None:
    service.enroll_many(pg_app, "blast", ["ann@example.com"], WHEN)
    assert http.post(f"/api/prospects/ann@example.com/pause?now={NOW}").json()["enrollments"] == 1
    view = http.get("/api/prospects/ann@example.com").json()
    assert view["enrollments"][0]["state"] == "paused"
    assert {"email", "engaged", "score", "enrollments", "events"} <= set(view)
    assert http.post(f"/api/prospects/ann@example.com/resume?now={NOW}").status_code == 200
    assert http.post(f"/api/prospects/ann@example.com/stop?now={NOW}").status_code == 200
    missing = http.get("/api/prospects/who@example.com")
    assert missing.status_code == 404
    gone = http.post(f"/api/unsubscribe?now={NOW}", json={"email": "bo@example.com"})
    assert gone.status_code == 200
    with transaction(pg_app.engine) as session:
        assert session.get(Suppression, "bo@example.com") is not None
    assert http.get("/api/stats").json() == []


def _sent(pg_app: App) -> Send:
    service.enroll_many(pg_app, "blast", ["eva@example.com"], WHEN)
    second = build_app(pg_app.settings)  # closing a runtime closes its App
    runtime = start(second, threads=1)
    try:
        runtime.tick(WHEN, simulated=True)
    finally:
        runtime.close()
    with transaction(pg_app.engine) as session:
        return session.scalars(sa.select(Send)).one()


def _reply(send: Send) -> bytes:
    msg = EmailMessage()
    msg["From"] = send.to_email
    msg["To"] = send.sender_email
    msg["Subject"] = "Re: " + send.subject
    msg["Message-ID"] = "<hook-reply@example.com>"
    msg["In-Reply-To"] = send.message_id
    msg.set_content("Yes, I am interested. Can we talk on Thursday?")
    return msg.as_bytes()


def test_webhook_secret_size_and_duplicates(http: httpx.Client, pg_app: App) -> None:
    send = _sent(pg_app)
    raw = _reply(send)
    url = f"/api/inbound?now={NOW}"
    assert http.post(url, content=raw).status_code == 403
    wrong = http.post(url, content=raw, headers={"X-Outreach-Secret": "guess"})
    assert wrong.status_code == 403
    huge = http.post(url, content=b"x" * 300_000, headers={"X-Outreach-Secret": SECRET})
    assert huge.status_code == 413
    first = http.post(url, content=raw, headers={"X-Outreach-Secret": SECRET})
    assert first.status_code == 202 and first.json()["duplicate"] is False
    # the provider retries, once as raw MIME and once as a form post carrying it
    again = http.post(url, content=raw, headers={"X-Outreach-Secret": SECRET})
    form = http.post(f"{url}&secret={SECRET}", files={"email": ("m.eml", raw)})
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert form.json() == {"id": first.json()["id"], "duplicate": True}
    with transaction(pg_app.engine) as session:
        replies = session.scalars(sa.select(Event).where(Event.type == EventType.REPLIED)).all()
        state = session.scalars(sa.select(Enrollment.state)).one()
    assert len(replies) == 1 and state == EnrollmentState.REPLIED
    queue = http.get("/api/calls").json()
    assert [(c["email"], c["reason"]) for c in queue] == [("eva@example.com", "interested")]
    done = http.post(f"/api/calls/{queue[0]['id']}/done?now={NOW}", json={"outcome": "meeting"})
    assert done.status_code == 200
    assert http.get("/api/stats").json()[0]["meetings"] == 1


def test_unsubscribe_get_changes_nothing_one_click_post_unsubscribes(
    http: httpx.Client, pg_app: App
) -> None:
    service.enroll_many(pg_app, "blast", ["eva@example.com"], WHEN)
    with transaction(pg_app.engine) as session:
        enrollment_id = session.scalars(sa.select(Enrollment.id)).one()
    token = unsubscribe_token(pg_app.secret, enrollment_id, 1)
    page = httpx.get(f"{http_base[0]}/u/{token}")
    assert page.status_code == 200 and "<button" in page.text
    with transaction(pg_app.engine) as session:
        assert session.get(Suppression, "eva@example.com") is None
    forged = httpx.post(
        f"{http_base[0]}/u/{token[:-2]}xx",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert forged.status_code == 404
    done = httpx.post(
        f"{http_base[0]}/u/{token}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    with transaction(pg_app.engine) as session:
        assert session.get(Suppression, "eva@example.com") is not None
        assert session.scalars(sa.select(Enrollment.state)).one() == EnrollmentState.UNSUBSCRIBED


def test_health_and_metrics(http: httpx.Client) -> None:
    health = http.get("/healthz")
    assert health.status_code == 200 and health.json() == {"database": "ok", "broker": "ok"}
    metrics = http.get("/metrics").text
    assert "outreach_sends" in metrics and "outreach_enrollments" in metrics


def test_one_click_takes_urlencoded_and_multipart_and_nothing_else(
    http: httpx.Client, pg_app: App
) -> None:
    service.enroll_many(pg_app, "blast", ["eva@example.com", "bo@example.com"], WHEN)
    with transaction(pg_app.engine) as session:
        ids = list(session.scalars(sa.select(Enrollment.id).order_by(Enrollment.id)))
    first, second = (unsubscribe_token(pg_app.secret, eid, 1) for eid in ids)
    lookalike = httpx.post(
        f"{http_base[0]}/u/{first}",
        content="X-List-Unsubscribe=One-Clickety",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert lookalike.status_code == 400
    multipart = httpx.post(
        f"{http_base[0]}/u/{second}", files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert multipart.status_code == 200
    assert multipart.headers["x-frame-options"] == "DENY"
    with transaction(pg_app.engine) as session:
        assert session.get(Suppression, "bo@example.com") is not None
        assert session.get(Suppression, "eva@example.com") is None


def test_odd_input_gets_4xx_not_500(http: httpx.Client) -> None:
    latin = http.post("/api/import", content=b"email\nann@example.com\n\xff\xfe@x\n")
    assert latin.status_code == 422 and latin.json()["imported"] == 1
    assert latin.json()["refused"] == [{"line": 3, "reason": "not UTF-8 text"}]
    garbage = http.post("/api/prospects/a@example.com/pause", content=b"\xff")
    assert garbage.status_code == 422
    assert http.post("/api/calls/999/done", json={"outcome": "meeting"}).status_code == 404
    unknown = http.post("/api/enroll", json={"sequence": "nope", "emails": ["a@example.com"]})
    assert "/" not in unknown.json()["error"]  # no server folder in the message
    assert httpx.get(f"{http_base[0]}/metrics").status_code == 401
