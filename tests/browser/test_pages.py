"""The pages people use, in a real browser: login, the call queue, a timeline, a funnel,
a preview, and the refusals (no session, no CSRF token)."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import BrowserContext, Page, expect

from outreach import service
from outreach.app import App
from outreach.db import transaction
from outreach.inbound.ingest import ingest
from outreach.models import CallTask, Event, EventType, Prospect
from outreach.runtime import start
from outreach.web.auth import SESSION_COOKIE
from tests.browser.conftest import log_in, screenshot
from tests.conftest import make_settings, write_sequence, write_template
from tests.conftest_http import TOKEN, serving

pytestmark = pytest.mark.timeout(120)

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPLY = "Yes, I'm interested. Can we talk Thursday at 2pm?\nBring the <b>pricing</b> sheet."


@pytest.fixture
def seq(app: App, workdir: Path) -> str:
    """Two emails, the second in the same thread; weekdays 09-17 UTC; an HTML first step."""
    write_template(
        workdir,
        "hello",
        "Hi {{ prospect.first_name }}, a quick question.\n",
        subject="Question for {{ prospect.company | default('you') }}",
    )
    (workdir / "templates" / "hello.html.j2").write_text(
        "<p>Hi <b>{{ prospect.first_name }}</b>, a quick question.</p>\n"
    )
    write_template(workdir, "again", "Following up, {{ prospect.first_name }}.\n", subject=None)
    write_sequence(
        workdir,
        "seq",
        """
        name: Inbound follow-up
        sender:
          from: "Ann Rep <ann@acme.example>"
          address: "Acme AB, Box 1, 111 22 Stockholm"
        schedule:
          timezone: UTC
          window: "09:00-17:00"
          days: [mon, tue, wed, thu, fri]
        steps:
          - email:
              template: hello
          - wait: 2 days
          - email:
              template: again
              thread: true
        """,
    )
    return "seq"


def add(app: App, address: str, first_name: str, company: str) -> None:
    with transaction(app.engine) as session:
        session.add(
            Prospect(
                email=address,
                first_name=first_name,
                company=company,
                created_at=MONDAY_9,
                updated_at=MONDAY_9,
                fields={},
            )
        )


def sent_to(app: App, address: str) -> EmailMessage:
    [path] = [p for p in sorted(app.settings.outbox_dir.glob("*.eml")) if address in p.read_text()]
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]


def reply_to(sent: EmailMessage, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = str(sent["To"])
    msg["To"] = str(sent["From"])
    msg["Subject"] = "Re: " + str(sent["Subject"])
    msg["Date"] = "Mon, 02 Mar 2026 11:00:00 +0000"
    msg["Message-ID"] = "<reply.1@client.example>"
    msg["In-Reply-To"] = str(sent["Message-ID"])
    msg["References"] = str(sent["Message-ID"])
    msg.set_content(f"{body}\n\nOn Mon, 2 Mar 2026 at 09:00, Ann Rep wrote:\n> Hi\n")
    return msg.as_bytes()


@pytest.fixture
def engaged(app: App, seq: str) -> str:
    """Eva and Bo got the first email; Eva answered that she is interested: a call task."""
    add(app, "eva@volvo.example", "Eva", "Volvo")
    add(app, "bo@saab.example", "Bo", "Saab")
    service.enroll_many(app, seq, ["eva@volvo.example", "bo@saab.example"], MONDAY_9)
    runtime = start(app, threads=2)
    try:
        runtime.tick(MONDAY_9, simulated=True)
    finally:
        runtime.close()
    ingest(app, reply_to(sent_to(app, "eva@volvo.example"), REPLY), MONDAY_9.replace(hour=11))
    return "eva@volvo.example"


def open_tasks(app: App) -> list[CallTask]:
    with transaction(app.engine) as session:
        return list(session.scalars(sa.select(CallTask).where(CallTask.status == "open")))


def test_login_then_done_removes_the_prospect_from_the_queue(
    app: App, engaged: str, page: Page
) -> None:
    log_in(page)
    page.wait_for_url("**/calls")
    row = page.locator(f"#queue tr[data-email='{engaged}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("interested")
    expect(row).to_contain_text("Can we talk Thursday")
    screenshot(page, "calls")

    row.get_by_role("button", name="Meeting").click()
    page.wait_for_url(re.compile(r"/calls\?.*done="))
    expect(page.get_by_role("status")).to_contain_text("recorded: Meeting")
    expect(page.locator(f"tr[data-email='{engaged}']")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    screenshot(page, "calls-done")
    assert open_tasks(app) == []
    with transaction(app.engine) as session:
        booked = session.scalars(
            sa.select(Event.type)
            .join(Prospect)
            .where(Prospect.email == engaged, Event.type == EventType.MEETING_BOOKED)
        ).all()
    assert booked == ["meeting_booked"]


def test_the_timeline_shows_the_reply_in_full(engaged: str, rep: Page) -> None:
    rep.get_by_role("link", name=engaged).click()
    rep.wait_for_url(f"**/prospects/{engaged}")
    reply = rep.locator("#timeline li[data-type='replied']")
    expect(reply).to_contain_text("interested")
    expect(reply.locator("blockquote")).to_have_text(REPLY)
    expect(rep.locator("#timeline li[data-type='sent']")).to_have_count(1)
    expect(rep.locator("#timeline li[data-type='call_task']")).to_have_count(1)
    expect(rep.locator("#enrollments")).to_contain_text("replied")
    screenshot(rep, "prospect")

    rep.goto("/prospects?q=volvo")
    expect(rep.get_by_role("link", name=engaged)).to_be_visible()
    expect(rep.get_by_role("link", name="bo@saab.example")).to_have_count(0)


def test_the_funnel_counts_per_step_and_variant(engaged: str, rep: Page) -> None:
    rep.get_by_role("link", name="Sequences").click()
    listed = rep.locator("#sequences tr[data-sequence='seq']")
    expect(listed).to_contain_text("Inbound follow-up")
    screenshot(rep, "sequences")

    listed.get_by_role("link", name="Inbound follow-up").click()
    rep.wait_for_url("**/sequences/seq")
    step = rep.locator("#funnel tr[data-step='1'][data-variant='hello']")
    counts = {
        name: step.locator(f"td[data-counter='{name}'] .count").inner_text()
        for name in ("sent", "opened", "replied", "bounced", "meetings")
    }
    assert counts == {"sent": "2", "opened": "0", "replied": "1", "bounced": "0", "meetings": "0"}
    expect(step.locator("td[data-counter='replied'] .rate")).to_have_text("50%")
    expect(rep.locator("#steps")).to_contain_text("same thread")
    screenshot(rep, "sequence")


def test_the_preview_renders_subject_text_and_html(engaged: str, rep: Page) -> None:
    rep.get_by_role("link", name="Preview").click()
    rep.locator("#step").select_option("seq:1")
    rep.locator("#prospect").select_option("")
    rep.get_by_role("button", name="Preview").click()
    sample = rep.locator("section.variant[data-variant='hello']")
    expect(sample.locator(".subject")).to_have_text("Question for Example Corp")
    expect(sample.locator("pre.text")).to_contain_text("Hi Alex, a quick question.")
    expect(sample.locator("pre.text")).to_contain_text("Acme AB, Box 1")  # the footer, as sent
    frame = rep.frame_locator("section.variant iframe")
    expect(frame.locator("b")).to_have_text("Alex")
    expect(frame.get_by_role("link", name="Unsubscribe")).to_be_visible()
    screenshot(rep, "preview-sample")

    rep.locator("#prospect").select_option(engaged)
    rep.get_by_role("button", name="Preview").click()
    expect(rep.locator(".subject")).to_have_text("Question for Volvo")
    rep.locator("#step").select_option("seq:2")
    rep.get_by_role("button", name="Preview").click()
    threaded = rep.locator("section.variant[data-variant='again']")
    expect(threaded.locator(".subject")).to_have_text("Re: Question for Volvo")
    expect(threaded.locator("pre.text")).to_contain_text("Following up, Eva.")
    expect(threaded).to_contain_text("No HTML part")
    screenshot(rep, "preview-thread")


def test_the_preview_works_with_no_prospects_at_all(seq: str, rep: Page) -> None:
    rep.goto("/preview?template=hello")
    expect(rep.locator(".subject")).to_have_text("Question for Example Corp")


def test_pages_without_login_go_to_the_login_form(site: str, page: Page) -> None:
    for path in ("/calls", "/prospects/eva@volvo.example", "/sequences", "/preview"):
        answer = httpx.get(site + path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=")
    page.goto("/sequences/seq")
    page.wait_for_url("**/login?next=%2Fsequences%2Fseq")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")
    log_in(page, fresh=False)
    page.wait_for_url("**/sequences/seq")  # back where it was going

    page.get_by_role("button", name="Logout").click()
    page.wait_for_url("**/login")
    page.goto("/calls")
    page.wait_for_url("**/login?next=%2Fcalls")


def test_a_wrong_token_is_refused(page: Page) -> None:
    log_in(page, "not-the-token")
    expect(page.get_by_role("alert")).to_have_text("This token is not accepted.")
    assert "/login" in page.url
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]


def test_a_post_without_the_csrf_token_is_refused(
    app: App, engaged: str, rep: Page, context: BrowserContext
) -> None:
    [task] = open_tasks(app)
    # the browser's own cookies, but not the page's form token: what a forged form sends
    missing = context.request.post(f"/calls/{task.id}/done", form={"outcome": "meeting"})
    forged = context.request.post(
        f"/calls/{task.id}/done", form={"outcome": "meeting", "csrf": "0" * 64}
    )
    assert (missing.status, forged.status) == (403, 403)
    assert "Refused" in forged.text()
    assert [t.id for t in open_tasks(app)] == [task.id]
    logout = context.request.post("/logout", form={})
    assert logout.status == 403
    rep.reload()
    expect(rep.locator(f"tr[data-email='{engaged}']")).to_be_visible()  # still logged in


def test_the_session_cookie_flags(workdir: Path) -> None:
    from outreach.app import build_app

    app = build_app(make_settings(workdir, api_tokens=TOKEN))  # base URL https://…
    try:
        with serving(app) as base, httpx.Client(base_url=base) as client:
            form = client.get("/login")
            nonce = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
            assert nonce is not None
            without = client.post("/login", data={"token": TOKEN})
            assert without.status_code == 403
            client.cookies.set("outreach_login", nonce.group(1))
            answer = client.post("/login", data={"token": TOKEN, "login_csrf": nonce.group(1)})
            assert answer.status_code == 303
            cookie = answer.headers["set-cookie"].lower()
            for flag in ("httponly", "samesite=lax", "secure", "path=/"):
                assert flag in cookie
            assert TOKEN not in answer.headers["set-cookie"]
    finally:
        app.close()
