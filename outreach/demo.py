"""`outreach demo`: sample prospects through the example sequences over simulated weeks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from outreach import calls as call_queue
from outreach import reports, service
from outreach.app import App, build_app
from outreach.db import transaction
from outreach.inbound.ingest import ingest
from outreach.models import Event, Prospect, Send, SendStatus
from outreach.runtime import start
from outreach.settings import Settings

PACKAGED = Path(__file__).resolve().parent / "starter"
PEOPLE = [
    (
        "maria.lindqvist@northwind.example",
        "Maria",
        "Lindqvist",
        "Northwind Traders",
        "Europe/Stockholm",
    ),
    ("jonas.berg@fjordlogistics.example", "Jonas", "Berg", "Fjord Logistics", "Europe/Oslo"),
    ("sam.carter@brightpath.example", "Sam", "Carter", "Brightpath Health", "America/New_York"),
    ("priya.nair@kestrel.example", "Priya", "Nair", "Kestrel Analytics", "Asia/Kolkata"),
    ("olivia.chen@harbourline.example", "Olivia", "Chen", "Harbourline", "Australia/Sydney"),
    ("lukas.meyer@alpenwerk.example", "Lukas", "Meyer", "", "Europe/Berlin"),
    ("dana.wells@greenfield.example", "Dana", "Wells", "Greenfield Retail", "America/Chicago"),
    ("tom.okafor@lumen.example", "Tom", "Okafor", "Lumen Energy", "Europe/London"),
]
SEQUENCE_OF = {0: "inbound_follow_up", 1: "inbound_follow_up", 5: "inbound_follow_up"}


def _settings(root: Path) -> Settings:
    base = Settings()
    sequences = base.sequences_dir if base.sequences_dir.is_dir() else PACKAGED / "sequences"
    templates = base.templates_dir if base.templates_dir.is_dir() else PACKAGED / "templates"
    root.mkdir(exist_ok=True)
    (root / "demo.db").unlink(missing_ok=True)
    # each run starts over: the demo's own outbox holds only this run's messages
    for old in (base.outbox_dir / "demo").glob("*.eml"):
        old.unlink()
    return base.model_copy(
        update={
            "database_url": f"sqlite:///{root / 'demo.db'}",
            "outbox_dir": base.outbox_dir / "demo",
            "sequences_dir": sequences,
            "templates_dir": templates,
            "broker_url": None,
            "smtp_url": None,
        }
    )


def _start_time(now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    monday = now - timedelta(days=now.weekday())
    return monday.replace(hour=7, minute=0, second=0, microsecond=0)


def _seed(app: App, start_at: datetime, log: list[str]) -> None:
    with transaction(app.engine) as session:
        for email, first, last, company, tz in PEOPLE:
            session.add(
                Prospect(
                    email=email,
                    first_name=first,
                    last_name=last,
                    company=company or None,
                    timezone=tz,
                    owner="ann",
                    created_at=start_at,
                    updated_at=start_at,
                    fields={},
                )
            )
    service.unsubscribe(app, "tom.okafor@lumen.example", start_at, "asked not to be contacted")
    for index, (email, *_rest) in enumerate(PEOPLE):
        report = service.enroll_many(
            app, SEQUENCE_OF.get(index, "cold_outbound"), [email], start_at, "ann"
        )
        log.extend(f"refused {who}: {why}" for who, why in report.refused)


def _fix_missing_company(app: App, at: datetime) -> None:
    with transaction(app.engine) as session:
        person = session.scalars(select(Prospect).where(col(Prospect.email).like("lukas%"))).first()
        if person is not None:
            person.company = "Alpenwerk GmbH"
    service.resume(app, "lukas.meyer@alpenwerk.example", at)


@dataclass
class Answer:
    """Mail a prospect's side sends back in the story, once our first email reached them."""

    after_hours: int
    email: str
    kind: str
    done: bool = False


ANSWERS = [
    Answer(26, "maria.lindqvist@northwind.example", "interested"),
    Answer(20, "sam.carter@brightpath.example", "bounce"),
    Answer(30, "priya.nair@kestrel.example", "out_of_office"),
    Answer(60, "dana.wells@greenfield.example", "not_interested"),
]


def _first_send(app: App, email: str) -> Send | None:
    with transaction(app.engine) as session:
        return session.scalars(
            select(Send)
            .where(Send.to_email == email, Send.status == SendStatus.SENT)
            .order_by(col(Send.id))
        ).first()


def _answer_mail(answer: Answer, send: Send, at: datetime) -> bytes:
    msg = EmailMessage()
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = f"<demo-{answer.kind}-{answer.email}>"
    sender = send.sender_email
    if answer.kind == "bounce":
        msg["From"] = "Mail Delivery System <MAILER-DAEMON@mx.brightpath.example>"
        msg["To"] = sender
        msg["Subject"] = "Undelivered Mail Returned to Sender"
        msg.set_content(
            f"This is the mail system at host mx.brightpath.example.\n\n"
            f"<{answer.email}>: host mx.brightpath.example said: 550 5.1.1 "
            f"<{answer.email}>: Recipient address rejected: User unknown\n"
        )
        original = EmailMessage()
        original["From"], original["To"] = sender, answer.email
        original["Subject"], original["Message-ID"] = send.subject, send.message_id
        msg.add_attachment(original.as_bytes(), maintype="text", subtype="rfc822-headers")
        msg.replace_header("Content-Type", msg["Content-Type"].replace("mixed", "report"))
        return msg.as_bytes()
    msg["From"] = answer.email
    msg["To"] = sender
    msg["In-Reply-To"] = send.message_id
    msg["References"] = send.message_id
    first = answer.email.split(".")[0].title()
    if answer.kind == "out_of_office":
        back = (at + timedelta(days=8)).strftime("%d %B %Y")
        msg["Subject"] = f"Automatic reply: {send.subject}"
        msg["Auto-Submitted"] = "auto-replied"
        msg.set_content(f"Hi, I am out of the office until {back} with limited access to email.")
        return msg.as_bytes()
    msg["Subject"] = f"Re: {send.subject}"
    text = {
        "interested": "Hi Ann,\n\nYes, this is interesting. Could we talk on Thursday at 10?",
        "not_interested": "Thanks, but we are not interested at the moment.",
    }[answer.kind]
    quoted = f"On {send.sent_at:%a %d %b %Y}, Ann Rep <{sender}> wrote:\n> {send.subject}"
    msg.set_content(f"{text}\n\n{first}\n\n{quoted}\n")
    return msg.as_bytes()


def _mail_back(app: App, started: datetime, at: datetime, notes: list[str]) -> None:
    for answer in ANSWERS:
        if answer.done or at < started + timedelta(hours=answer.after_hours):
            continue
        send = _first_send(app, answer.email)
        if send is None:
            continue
        answer.done = True
        result = ingest(app, _answer_mail(answer, send, at), at, source=f"demo:{answer.kind}")
        notes.append(
            f"{at:%a %d %b %H:%M} UTC: mail from {answer.email} read as {result.kind} "
            f"(matched by {result.match}): " + "; ".join(result.effects)
        )
        if answer.kind == "interested":
            _book_meeting(app, answer.email, at + timedelta(hours=3), notes)


def _book_meeting(app: App, email: str, at: datetime, notes: list[str]) -> None:
    """The rep calls the interested prospect back and books a meeting."""
    with transaction(app.engine) as session:
        for task in call_queue.queue(session):
            if task["email"] == email:
                call_queue.complete(session, task["id"], call_queue.CallOutcome.MEETING, at)
                notes.append(f"{at:%a %d %b %H:%M} UTC: Ann called {email}: meeting booked")
                return


def run_demo(now: datetime | None, *, days: int, console: Console, as_json: bool) -> None:
    """Run the story and print the timeline, the funnel and the call queue."""
    app = build_app(_settings(Path(".outreach-demo")))
    runtime = start(app, threads=4)
    start_at = _start_time(now)
    notes: list[str] = []
    for answer in ANSWERS:
        answer.done = False
    try:
        _seed(app, start_at, notes)
        for hour in range(days * 24):
            at = start_at + timedelta(hours=hour)
            if hour == 30:
                _fix_missing_company(app, at)
                notes.append(
                    f"{at:%a %d %b %H:%M} UTC: Lukas's company filled in, enrollment resumed"
                )
            runtime.tick(at, simulated=True)
            _mail_back(app, start_at, at, notes)
        _report(app, console, as_json, notes)
    finally:
        runtime.close()


def _report(app: App, console: Console, as_json: bool, notes: list[str]) -> None:
    with transaction(app.engine) as session:
        timeline = _timeline(session)
        funnel = reports.stats(session)
        queue = call_queue.queue(session)
    if as_json:
        console.print_json(
            json.dumps({"timeline": timeline, "stats": funnel, "calls": queue, "notes": notes})
        )
        return
    _print_timeline(console, timeline)
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]")
    _print_table(console, "Funnel per step and variant", funnel, list(reports.COUNTERS))
    _print_table(
        console, "Call queue", queue, ["id", "email", "sequence", "reason", "score", "note"]
    )
    console.print(f"Messages written to {app.settings.outbox_dir}/ (one .eml each).")


def _timeline(session: Any) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Event, Prospect.email, Prospect.timezone)
        .join(Prospect, col(Prospect.id) == col(Event.prospect_id))
        .order_by(col(Event.at), col(Event.id))
    )
    return [
        {
            "at": ev.at.isoformat(),
            "local": _local(ev.at, tz),
            "email": email,
            "type": str(ev.type),
            "sequence": ev.sequence_id,
            "step": ev.step,
            "detail": ev.data,
        }
        for ev, email, tz in rows
    ]


def _local(at: datetime, tz: str | None) -> str:
    from zoneinfo import ZoneInfo

    return at.astimezone(ZoneInfo(tz or "UTC")).strftime("%a %d %b %H:%M %Z")


def _print_timeline(console: Console, timeline: list[dict[str, Any]]) -> None:
    table = Table("UTC", "prospect's time", "prospect", "event", "step", "detail", title="Timeline")
    for row in timeline:
        detail = _detail(row["detail"])
        table.add_row(
            row["at"][5:16].replace("T", " "),
            row["local"],
            row["email"].split("@")[0],
            row["type"],
            str(row["step"] or ""),
            str(detail),
        )
    console.print(table)


def _detail(data: dict[str, Any]) -> str:
    if "intent" in data:
        return f"{data['intent']}: {' '.join(str(data.get('text', '')).split())}"
    if "return_date" in data:
        return f"out of office, back {data['return_date']}"
    if "until" in data:
        return f"{data.get('reason', '')} (resumes {data['until'][:16]})"
    for key in ("template", "reason", "note", "outcome"):
        if data.get(key):
            return str(data[key])
    return ""


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(
    console: Console, title: str, rows: list[dict[str, Any]], columns: list[str]
) -> None:
    keys = ["sequence", "step", "variant", *columns] if "sent" in columns else columns
    table = Table(*keys, title=title)
    for row in rows:
        table.add_row(*(_cut(str(row.get(k, "") or "")) for k in keys))
    console.print(table)
