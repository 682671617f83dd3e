"""`outreach demo`: sample prospects through the example sequences over simulated weeks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from outreach import calls as call_queue
from outreach import reports, service
from outreach.app import App, build_app
from outreach.db import transaction
from outreach.models import Event, Prospect
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


def run_demo(now: datetime | None, *, days: int, console: Console, as_json: bool) -> None:
    """Run the story and print the timeline, the funnel and the call queue."""
    app = build_app(_settings(Path(".outreach-demo")))
    runtime = start(app, threads=4)
    start_at = _start_time(now)
    notes: list[str] = []
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
        detail = (
            row["detail"].get("template")
            or row["detail"].get("reason")
            or row["detail"].get("note")
            or ""
        )
        table.add_row(
            row["at"][5:16].replace("T", " "),
            row["local"],
            row["email"].split("@")[0],
            row["type"],
            str(row["step"] or ""),
            str(detail),
        )
    console.print(table)


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
