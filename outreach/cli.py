"""The `outreach` command: thin adapters from arguments to the service functions."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from outreach import calls as call_queue
from outreach import prospect as prospects
from outreach import reports, service
from outreach.app import App, build_app
from outreach.clock import parse_now, utcnow
from outreach.db import transaction
from outreach.errors import InputError, OutreachError
from outreach.sequence import validate_folder
from outreach.settings import Settings

cli = typer.Typer(help="Sales sequences as code.", no_args_is_help=True, add_completion=False)
calls_cli = typer.Typer(help="The call queue.", invoke_without_command=True)
cli.add_typer(calls_cli, name="calls")
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)

NowOpt = Annotated[str | None, typer.Option("--now", help="ISO-8601 time with Z or an offset")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
SeqOpt = Annotated[str | None, typer.Option("--sequence", help="only this sequence")]
STARTER = Path(__file__).resolve().parent / "starter"


def main() -> None:
    """Entry point: input errors exit 1 with their message, usage errors 2."""
    try:
        code = cli(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except OutreachError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # click's usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is None:
            raise
        if hasattr(exc, "show"):
            exc.show()
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)


@contextmanager
def opened() -> Iterator[App]:
    """An App on the settings, closed afterwards."""
    app = build_app(Settings())
    try:
        yield app
    finally:
        app.close()


def emit(data: Any) -> None:
    """Print JSON on stdout."""
    out.print_json(json.dumps(data, default=str))


def _fail_if(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)
    if lines:
        raise typer.Exit(1)


@cli.command()
def init(directory: Annotated[Path, typer.Argument()] = Path(".")) -> None:
    """A working folder with example sequences, templates and a .env file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("sequences", "templates"):
        source, target = STARTER / name, directory / name
        if not source.is_dir():
            raise InputError(f"the example {name} are not installed beside the package")
        if target.exists():
            err.print(f"{target} exists, kept as it is")
            continue
        shutil.copytree(source, target)
    env = directory / ".env"
    if not env.exists():
        env.write_text(
            "# outreach settings; see README.md\n"
            "OUTREACH_DATABASE_URL=sqlite:///outreach.db\n"
            "OUTREACH_OUTBOX_DIR=outbox\n"
            "# OUTREACH_BROKER_URL=redis://127.0.0.1:6379/0\n"
            "# OUTREACH_SMTP_URL=smtp://user:pass@smtp.example.com:587\n"
            "OUTREACH_BASE_URL=http://localhost:8000\n"
        )
    out.print(f"ready: {directory.resolve()}  (try: outreach validate)")


@cli.command()
def validate() -> None:
    """Check every sequence and template; exit 1 with `path:line: message` lines."""
    settings = Settings()
    errors = validate_folder(settings.sequences_dir, settings.templates_dir)
    _fail_if(errors)
    out.print(f"ok: {settings.sequences_dir} and {settings.templates_dir} are valid")


@cli.command()
def preview(
    sequence: str,
    prospect: Annotated[str, typer.Option("--prospect", help="the prospect's address")],
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each email as it would be sent to a prospect, with its planned time."""
    with opened() as app:
        planned = service.preview(app, sequence, prospect, parse_now(now))
    if as_json:
        emit(planned)
        return
    for item in planned:
        out.rule(f"step {item['step']} · {item['kind']} · {item['local_time']}")
        if item["kind"] != "email":
            out.print(item["note"], markup=False, highlight=False)
        for variant in item.get("variants", []):
            _print_variant(variant)


def _print_variant(variant: dict[str, Any]) -> None:
    if "error" in variant:
        out.print(f"[yellow]{variant['variant']}: {variant['error']}[/yellow]")
        return
    head = f"From: {variant['from']}\nTo: {variant['to']}\nSubject: {variant['subject']}"
    out.print(f"[bold]{variant['variant']}[/bold]")
    out.print(head, markup=False, highlight=False)
    out.print("\n" + variant["text"], markup=False, highlight=False)


@cli.command("import")
def import_(file: Path, now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """Upsert prospects from a CSV file; bad rows are reported and the good ones kept."""
    when = parse_now(now)
    if not file.exists():
        raise InputError(f"{file}: no such file")
    with opened() as app, _progress("importing", as_json) as advance:
        report = prospects.import_csv(app.engine, file, when, progress=advance)
    if as_json:
        emit({"imported": report.imported, "refused": report.refused, "warnings": report.warnings})
    else:
        out.print(f"imported {report.imported} prospects")
        for line, why in report.warnings:
            print(f"{file}:{line}: warning: {why}", file=sys.stderr)
    _fail_if([f"{file}:{line}: {why}" for line, why in report.refused])


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    if quiet or not sys.stderr.isatty():
        yield lambda _n: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda n: progress.advance(task, n)


@cli.command()
def enroll(
    sequence: str,
    emails: Annotated[list[str] | None, typer.Argument()] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="a CSV with an email column")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enroll prospects; an address already active, suppressed or invalid is refused."""
    when = parse_now(now)
    addresses = list(emails or [])
    refused: list[tuple[str, str]] = []
    with opened() as app:
        app.sequence(sequence)
        if csv is not None:
            if not csv.exists():
                raise InputError(f"{csv}: no such file")
            imported = prospects.import_csv(app.engine, csv, when)
            refused += [(f"{csv}:{line}", why) for line, why in imported.refused]
            addresses += _csv_addresses(csv)
        if not addresses and not refused:
            raise typer.BadParameter("give addresses or --csv FILE")
        report = service.enroll_many(app, sequence, addresses, when, owner)
    refused += report.refused
    if as_json:
        emit({"enrolled": report.enrolled, "refused": refused})
    else:
        out.print(f"enrolled {len(report.enrolled)} in {sequence}")
    _fail_if([f"{who}: {why}" for who, why in refused])


def _csv_addresses(path: Path) -> list[str]:
    report = prospects.ImportReport()
    return [row.email for row in prospects.read_csv(path, report)]


@cli.command()
def tick(now: NowOpt = None, as_json: JsonOpt = False) -> None:
    """One scheduler pass: every step due at `now` is dispatched."""
    from outreach import runtime

    with opened() as app:
        run = runtime.start(app)
        try:
            count = run.tick(parse_now(now), simulated=now is not None)
        finally:
            run.close()
    if as_json:
        emit({"dispatched": count})
    else:
        out.print(f"dispatched {count} due steps")


@cli.command()
def scheduler() -> None:
    """Tick forever; safe to run several at once."""
    from outreach import logs, runtime
    from outreach.scheduler import run_forever

    logs.configure()
    with opened() as app:
        run = runtime.start(app)
        stopping = _stop_flag()
        err.print("scheduler running; Ctrl-C to stop")
        run_forever(app, run.actors, utcnow, should_stop=stopping)
        run.close()


def _stop_flag() -> Callable[[], bool]:
    state = {"stop": False}

    def handler(_signum: int, _frame: object) -> None:
        state["stop"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return lambda: state["stop"]


@cli.command()
def worker(
    processes: Annotated[int | None, typer.Option("--processes")] = None,
    threads: Annotated[int | None, typer.Option("--threads")] = None,
) -> None:
    """A Dramatiq worker for the configured broker (Dramatiq's own CLI, our actors)."""
    settings = Settings()
    if not settings.broker_url:
        raise InputError("OUTREACH_BROKER_URL is not set: use `outreach run` on one machine")
    args = [
        sys.executable,
        "-m",
        "dramatiq",
        "outreach.worker_entry",
        "--processes",
        str(processes or settings.worker_processes),
        "--threads",
        str(threads or settings.worker_threads),
        "--queues",
        "outreach",
    ]
    os.execv(sys.executable, args)


@cli.command()
def run() -> None:
    """Scheduler and worker in one process: the single-machine mode."""
    from outreach import logs, runtime
    from outreach.scheduler import run_forever

    logs.configure()
    with opened() as app:
        rt = runtime.start(app)
        if rt.worker is None:
            import dramatiq

            rt.worker = dramatiq.Worker(
                rt.actors.broker, worker_threads=app.settings.worker_threads
            )
            rt.worker.start()
        err.print("outreach running (scheduler and worker); Ctrl-C to stop")
        run_forever(app, rt.actors, utcnow, should_stop=_stop_flag())
        rt.close()


@cli.command("prospect")
def prospect_(email: str, as_json: JsonOpt = False) -> None:
    """The prospect, their enrollments and their timeline of events."""
    with opened() as app, transaction(app.engine) as session:
        view = reports.prospect_view(session, app.versions, email)
    if as_json:
        emit(view)
        return
    name = " ".join(p for p in (view["first_name"], view["last_name"]) if p)
    out.print(
        f"[bold]{view['email']}[/bold] {name} · {view['company'] or ''} · score {view['score']}"
        f"{' · engaged' if view['engaged'] else ''}"
    )
    table = Table("sequence", "state", "step", "next run", "reason")
    for e in view["enrollments"]:
        table.add_row(
            e["sequence"], e["state"], str(e["step"]), e["next_run_at"] or "", e["reason"] or ""
        )
    out.print(table)
    timeline = Table("at", "event", "sequence", "step", "detail")
    for ev in view["events"]:
        detail = _event_detail(ev)
        timeline.add_row(ev["at"], ev["type"], ev["sequence"] or "", str(ev["step"] or ""), detail)
    out.print(timeline)


def _event_detail(event: dict[str, Any]) -> str:
    """A timeline line's detail: a reply's intent and text in full, else its fields."""
    if "text" in event:
        return f"{event.get('intent', '')}: {event['text']}"
    skip = ("type", "at", "sequence", "step", "inbound")
    return ", ".join(f"{k}={v}" for k, v in event.items() if k not in skip)


@calls_cli.callback()
def calls(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The call queue: engaged prospects and call steps, most engaged first."""
    if ctx.invoked_subcommand:
        return
    with opened() as app, transaction(app.engine) as session:
        rows = call_queue.queue(session, owner)
    if as_json:
        emit(rows)
        return
    table = Table("id", "email", "sequence", "reason", "due", "owner", "score", "note")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["email"],
            r["sequence"] or "",
            r["reason"],
            r["due_at"],
            r["owner"] or "",
            str(r["score"]),
            r["note"] or "",
        )
    out.print(table)


@calls_cli.command("done")
def calls_done(
    task_id: int,
    outcome: Annotated[call_queue.CallOutcome, typer.Option("--outcome")],
    handoff: Annotated[
        str | None, typer.Option("--handoff", help="give the prospect to this rep")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="callback time, ISO-8601")] = None,
    now: NowOpt = None,
) -> None:
    """Record a call; a meeting ends the sequence as booked."""
    when = parse_now(now)
    callback = parse_now(at) if at else None
    with opened() as app, transaction(app.engine) as session:
        call_queue.complete(session, task_id, outcome, when, handoff=handoff, callback_at=callback)
    out.print(f"call {task_id}: {outcome}")


@cli.command()
def stats(
    sequence: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False
) -> None:
    """Per step and variant: sent, opened, clicked, replied, bounced, unsubscribed, meetings."""
    with opened() as app, transaction(app.engine) as session:
        rows = reports.stats(session, sequence)
    if as_json:
        emit(rows)
        return
    table = Table("sequence", "step", "variant", *reports.COUNTERS)
    for r in rows:
        table.add_row(
            r["sequence"], str(r["step"]), r["variant"], *(str(r[c]) for c in reports.COUNTERS)
        )
    out.print(table)


def _manual(
    action: Callable[[App, str, datetime, str | None], int], verb: str, doc: str
) -> Callable[..., None]:
    def command(email: str, sequence: SeqOpt = None, now: NowOpt = None) -> None:
        with opened() as app:
            count = action(app, email, parse_now(now), sequence)
        out.print(f"{verb} {count} enrollment(s) of {email}")

    command.__doc__ = doc
    return command


cli.command("pause")(_manual(service.pause, "paused", "Pause a prospect's active enrollments."))
cli.command("resume")(
    _manual(
        service.resume,
        "resumed",
        "Resume paused enrollments at the window's next opening (an unknown send is skipped).",
    )
)
cli.command("stop")(_manual(service.stop, "stopped", "Stop a prospect's enrollments for good."))


@cli.command()
def unsubscribe(email: str, now: NowOpt = None) -> None:
    """Add an address to the suppression list and stop every enrollment."""
    with opened() as app:
        count = service.unsubscribe(app, email, parse_now(now))
    out.print(f"suppressed {email}; ended {count} enrollment(s)")


@cli.command()
def ingest(
    files: Annotated[
        list[str] | None, typer.Argument(help=".eml, mbox, Maildir or - for stdin")
    ] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Process inbound messages: replies, bounces, auto-replies, complaints, unsubscribes."""
    from outreach.inbound import sources
    from outreach.inbound.ingest import ingest as ingest_one

    when = parse_now(now)
    if not files and sys.stdin.isatty():
        raise typer.BadParameter("give .eml, mbox or Maildir paths, or - to read stdin")
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    with opened() as app, _progress("ingesting", as_json or not files) as advance:
        for item in sources.read(files or ["-"]):
            if isinstance(item, sources.Unreadable):
                problems.append(f"{item.source}: {item.reason}")
                continue
            source, raw = item
            result = ingest_one(app, raw, when, source)
            results.append(result.to_json())
            if result.error and not result.duplicate:
                problems.append(f"{source}: kept as unreadable: {result.error}")
            advance(1)
    if as_json:
        emit(results)
    else:
        _print_ingested(results)
    _fail_if(problems)


def _print_ingested(results: list[dict[str, Any]]) -> None:
    table = Table("source", "kind", "status", "match", "prospect", "what changed")
    for r in results:
        effects = r["effects"] or ([r["error"]] if r["error"] else [])
        status = "duplicate" if r["duplicate"] else r["status"]
        table.add_row(
            r["source"], r["kind"], status, r["match"] or "", r["email"] or "", "; ".join(effects)
        )
    out.print(table)
    kept = sum(1 for r in results if r["status"] != "processed" and not r["duplicate"])
    if kept:
        out.print(f"{kept} message(s) kept unmatched or unreadable: `outreach inbox --unmatched`")


@cli.command()
def classify(
    files: Annotated[list[str], typer.Argument(help=".eml, mbox or Maildir")],
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say what each message is, why, and which enrollment it matches; changes nothing."""
    from outreach.inbound import sources
    from outreach.inbound.explain import explain

    when = parse_now(now)
    answers: list[dict[str, Any]] = []
    problems: list[str] = []
    with opened() as app:
        for item in sources.read(files):
            if isinstance(item, sources.Unreadable):
                problems.append(f"{item.source}: {item.reason}")
                continue
            source, raw = item
            answers.append({"file": source, **explain(app, raw, when)})
    if as_json:
        emit(answers)
    else:
        for a in answers:
            _print_answer(a)
    _fail_if(problems)


def _print_answer(answer: dict[str, Any]) -> None:
    out.print(f"[bold]{answer['file']}[/bold]: {answer['kind']}")
    bounce = answer.get("bounce")
    if bounce:
        hard = "hard" if bounce["hard"] else "soft"
        who = ", ".join(r["address"] or "?" for r in bounce["recipients"])
        out.print(f"  {hard} bounce {bounce['status'] or ''} {bounce['reason']}: {who}")
    if answer.get("intent"):
        out.print(f"  intent: {answer['intent']}")
    if answer.get("return_date"):
        out.print(f"  back on: {answer['return_date']}")
    match = answer.get("match")
    where = f"{match['email']} ({match['method']})" if match else "no enrollment"
    out.print(f"  matches: {where}")
    for why in answer["why"]:
        out.print(f"  - {why}")
    if answer.get("text"):
        out.print("  text: " + answer["text"].replace("\n", "\n        "))


@cli.command()
def inbox(
    once: Annotated[bool, typer.Option("--once", help="one pass, then exit")] = False,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="list kept messages nothing matched")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Poll the IMAP mailbox (OUTREACH_IMAP_URL) and ingest what arrives."""
    if unmatched:
        _list_unmatched(as_json)
        return
    from outreach.inbound.mailbox import watch

    with opened() as app:
        if not app.settings.imap_url:
            raise InputError("OUTREACH_IMAP_URL is not set (imaps://user:pass@host/INBOX)")
        stopping = None if once else _stop_flag()
        count = watch(app, app.settings.imap_url, once=once, should_stop=stopping)
    if as_json:
        emit({"ingested": count})
    else:
        out.print(f"ingested {count} message(s)")


def _list_unmatched(as_json: bool) -> None:
    from outreach.inbound.ingest import listing
    from outreach.models import InboundStatus

    with opened() as app, transaction(app.engine) as session:
        rows = listing(session, [InboundStatus.UNMATCHED, InboundStatus.ERROR])
    if as_json:
        emit(rows)
        return
    table = Table("id", "received", "status", "kind", "from", "subject", "source", "why")
    for r in rows:
        why = r["error"] or "; ".join(r["why"])
        table.add_row(
            str(r["id"]),
            r["received_at"],
            r["status"],
            r["kind"],
            r["from"] or "",
            r["subject"] or "",
            r["source"],
            why,
        )
    out.print(table)


@cli.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
) -> None:
    """The HTTP API, tracking links, unsubscribe and the web pages (uvicorn)."""
    import uvicorn

    from outreach import runtime
    from outreach.web.server import create_app

    with opened() as app:
        rt = runtime.start(app)
        try:
            uvicorn.run(create_app(app, rt.actors), host=host, port=port, log_level="info")
        finally:
            rt.close()


sends_cli = typer.Typer(help="Failed and unknown sends, and retrying them.")
cli.add_typer(sends_cli, name="sends", invoke_without_command=True)


@cli.command()
def doctor(as_json: JsonOpt = False) -> None:
    """Check the settings, folders, database, broker, SMTP, DKIM and IMAP; change nothing."""
    from outreach import doctor as checkup

    checks = checkup.run()
    if as_json:
        emit([c.as_dict() for c in checks])
    else:
        styles = {"ok": "green", "warning": "yellow", "error": "bold red"}
        table = Table("check", "status", "message", "hint")
        for c in checks:
            status = f"[{styles[c.status]}]{c.status}[/]"
            table.add_row(c.check, status, c.message, c.hint, style=None)
        out.print(table)
    if checkup.failed(checks):
        raise typer.Exit(1)


@sends_cli.callback()
def sends(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="failed or unknown (default: both)")
    ] = None,
    sequence: SeqOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The failed and unknown sends, newest first."""
    from outreach import sends as ledger_sends

    if ctx.invoked_subcommand:
        return
    if status not in (None, "failed", "unknown"):
        err.print(f"error: --status is failed or unknown, not {status}")
        raise typer.Exit(2)
    with opened() as app, transaction(app.engine) as session:
        rows = ledger_sends.listing(session, status, sequence)
    if as_json:
        emit(rows)
        return
    table = Table("id", "email", "sequence", "step", "status", "error", "started")
    for r in rows:
        code = f"{r['code']} " if r["code"] is not None else ""
        table.add_row(
            str(r["id"]),
            r["email"],
            r["sequence"],
            str(r["step"]),
            r["status"],
            code + (r["error"] or ""),
            r["started_at"],
        )
    out.print(table)


@sends_cli.command("retry")
def sends_retry(
    send_id: int,
    now: NowOpt = None,
    yes_resend: Annotated[
        bool, typer.Option("--yes-resend", help="resend an unknown send that may have arrived")
    ] = False,
) -> None:
    """Re-open the step of a failed or unknown send so the next tick sends it again."""
    from outreach import sends as ledger_sends

    with opened() as app:
        try:
            with transaction(app.engine) as session:
                enrollment = ledger_sends.retry(session, send_id, parse_now(now), resend=yes_resend)
        except InputError as exc:
            err.print(f"error: {exc}")
            raise typer.Exit(1) from exc
    out.print(
        f"send {send_id}: step {enrollment.step} of {enrollment.sequence_id} re-opened, "
        f"due {enrollment.next_run_at}"
    )


@cli.command()
def demo(
    now: NowOpt = None,
    days: Annotated[int, typer.Option("--days")] = 14,
    as_json: JsonOpt = False,
) -> None:
    """The whole story on the defaults: sample prospects, two simulated weeks, the funnel."""
    from outreach.demo import run_demo

    run_demo(parse_now(now) if now else None, days=days, console=out, as_json=as_json)


if __name__ == "__main__":
    main()
