"""The real `outreach` command run as a user would, on the embedded defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MONDAY = "2026-03-02T08:00:00Z"


def run(cwd: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    result = subprocess.run(
        [sys.executable, "-m", "outreach", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check is not None:
        assert result.returncode == check, (result.stdout, result.stderr)
    return result


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    run(tmp_path, "init", ".")
    return tmp_path


def test_init_then_validate_passes(folder: Path) -> None:
    assert (folder / ".env").exists()
    assert "valid" in run(folder, "validate").stdout


def test_validate_reports_path_and_line_and_exits_1(folder: Path) -> None:
    path = folder / "sequences" / "inbound_follow_up.yaml"
    path.write_text(path.read_text().replace("wait: 2 business days", "wait: 2 fortnights"))
    result = run(folder, "validate", check=1)
    assert "sequences/inbound_follow_up.yaml:" in result.stderr
    assert "fortnights" in result.stderr


def test_import_keeps_good_rows_and_reports_bad_ones(folder: Path) -> None:
    csv = folder / "people.csv"
    csv.write_text(
        "email,first_name,company,timezone,industry\n"
        "ann@example.com,Ann,Volvo,Europe/Stockholm,cars\n"
        "not-an-address,Bob,X,,\n"
        "cy@example.com,Cy,Ikea,Mars/Olympus,\n"
        "ANN@example.com,Annie,Volvo,,\n"
    )
    result = run(folder, "import", str(csv), check=1)
    assert "people.csv:3:" in result.stderr and "not-an-address" in result.stderr
    assert "people.csv:4:" in result.stderr and "Mars/Olympus" in result.stderr
    assert "people.csv:5: warning" in result.stderr
    view = json.loads(run(folder, "prospect", "ann@example.com", "--json").stdout)
    assert view["first_name"] == "Annie"  # the later row wins
    again = folder / "again.csv"
    again.write_text("email,title,industry\nann@example.com,CTO,cars\n")
    run(folder, "import", str(again))
    view = json.loads(run(folder, "prospect", "ann@example.com", "--json").stdout)
    assert (view["first_name"], view["title"]) == ("Annie", "CTO")  # blanks never erase
    assert view["fields"] == {"industry": "cars"}


def test_enroll_refusals_tick_and_timeline(folder: Path) -> None:
    csv = folder / "people.csv"
    csv.write_text(
        "email,first_name,company,timezone\neva@example.com,Eva,Volvo,Europe/Stockholm\n"
    )
    run(folder, "import", str(csv))
    run(folder, "unsubscribe", "no@example.com")
    result = run(
        folder,
        "enroll",
        "inbound_follow_up",
        "eva@example.com",
        "no@example.com",
        "bad@",
        "--now",
        MONDAY,
        "--json",
        check=1,
    )
    report = json.loads(result.stdout)
    assert report["enrolled"] == ["eva@example.com"]
    reasons = dict(report["refused"])
    assert "suppressed" in reasons["no@example.com"] and "invalid" in reasons["bad@"]
    again = run(folder, "enroll", "inbound_follow_up", "eva@example.com", "--now", MONDAY, check=1)
    assert "already active" in again.stderr
    assert json.loads(run(folder, "tick", "--now", MONDAY, "--json").stdout) == {"dispatched": 1}
    [message] = (folder / "outbox").glob("*.eml")
    assert "To: Eva <eva@example.com>" in message.read_text()
    view = json.loads(run(folder, "prospect", "eva@example.com", "--json").stdout)
    assert [e["type"] for e in view["events"]] == ["enrolled", "sent"]
    assert view["enrollments"][0]["state"] == "active"
    assert view["enrollments"][0]["step"] == 2
    stats = json.loads(run(folder, "stats", "--json").stdout)
    assert stats[0]["sequence"] == "inbound_follow_up" and stats[0]["sent"] == 1
    assert set(stats[0]) >= {"step", "variant", "opened", "clicked", "replied", "meetings"}


def test_call_step_reaches_queue_and_meeting_counts(folder: Path) -> None:
    run(folder, "enroll", "inbound_follow_up", "eva@example.com", "--now", MONDAY)
    with_company = folder / "p.csv"
    with_company.write_text("email,first_name,company\neva@example.com,Eva,Volvo\n")
    run(folder, "import", str(with_company))
    for day in ("2026-03-02T08:00:00Z", "2026-03-04T08:00:00Z", "2026-03-09T08:00:00Z"):
        run(folder, "tick", "--now", day)
    [task] = json.loads(run(folder, "calls", "--json").stdout)
    assert task["email"] == "eva@example.com" and "Call Eva" in task["note"]
    run(folder, "calls", "done", str(task["id"]), "--outcome", "meeting", "--now", MONDAY)
    assert json.loads(run(folder, "calls", "--json").stdout) == []
    view = json.loads(run(folder, "prospect", "eva@example.com", "--json").stdout)
    assert view["enrollments"][0]["state"] == "meeting_booked"
    meetings = sum(r["meetings"] for r in json.loads(run(folder, "stats", "--json").stdout))
    assert meetings == 1


def test_pause_resume_stop(folder: Path) -> None:
    run(folder, "enroll", "cold_outbound", "eva@example.com", "--now", MONDAY)
    run(folder, "pause", "eva@example.com")
    view = json.loads(run(folder, "prospect", "eva@example.com", "--json").stdout)
    assert view["enrollments"][0]["state"] == "paused"
    run(folder, "resume", "eva@example.com", "--now", MONDAY)
    run(folder, "stop", "eva@example.com", "--sequence", "cold_outbound")
    view = json.loads(run(folder, "prospect", "eva@example.com", "--json").stdout)
    assert view["enrollments"][0]["state"] == "stopped"
    assert json.loads(run(folder, "tick", "--now", MONDAY, "--json").stdout) == {"dispatched": 0}


def test_preview_shows_what_and_when(folder: Path) -> None:
    csv = folder / "p.csv"
    csv.write_text(
        "email,first_name,company,timezone\neva@example.com,Eva,Volvo,Europe/Stockholm\n"
    )
    run(folder, "import", str(csv))
    planned = json.loads(
        run(
            folder,
            "preview",
            "inbound_follow_up",
            "--prospect",
            "eva@example.com",
            "--now",
            "2026-03-06T16:30:00Z",
            "--json",
        ).stdout
    )
    assert planned[0]["local_time"].startswith("2026-03-09T09:00")  # Friday 17:30 is too late
    assert planned[1]["variants"][0]["subject"].startswith("Re: ")
    assert [p["kind"] for p in planned] == ["email", "email", "call", "email"]
    assert not list((folder / "outbox").glob("*.eml")) if (folder / "outbox").exists() else True


def test_bad_now_is_refused_and_usage_errors_exit_2(folder: Path) -> None:
    result = run(folder, "tick", "--now", "2026-03-02T08:00:00", check=1)
    assert "no timezone" in result.stderr
    assert run(folder, "enroll", check=2).returncode == 2
    assert run(folder, "no-such-command", check=2).returncode == 2


def test_demo_runs_on_the_defaults(tmp_path: Path) -> None:
    result = run(tmp_path, "demo", "--now", MONDAY, "--json")
    story = json.loads(result.stdout)
    types = {row["type"] for row in story["timeline"]}
    assert {"enrolled", "sent", "paused", "resumed", "call_task", "unsubscribed"} <= types
    assert {"replied", "bounced", "auto_reply"} <= types
    assert story["calls"] and story["stats"]
    assert "call_step" in {row["reason"] for row in story["calls"]}
    assert "meeting_booked" in types  # the interested prospect was called back
    assert sum(row["meetings"] for row in story["stats"]) == 1
    replied = [row for row in story["timeline"] if row["type"] == "replied"]
    assert any(row["detail"]["intent"] == "interested" for row in replied)


def test_ingest_and_classify_a_reply(folder: Path) -> None:
    run(folder, "import", "--now", MONDAY, str(_people(folder)))
    run(folder, "enroll", "inbound_follow_up", "ann@example.com", "--now", MONDAY)
    run(folder, "tick", "--now", "2026-03-02T10:00:00Z")
    [sent] = (folder / "outbox").glob("*.eml")
    message_id = next(
        line.split(":", 1)[1].strip()
        for line in sent.read_text().splitlines()
        if line.startswith("Message-ID:")
    )
    reply = folder / "reply.eml"
    reply.write_text(
        "From: Ann <ann@example.com>\nTo: ann@acme.example\nSubject: Re: hi\n"
        f"Message-ID: <a1@example.com>\nIn-Reply-To: {message_id}\n\n"
        "Yes, I am interested. Could we talk on Thursday?\n\n"
        "On Mon, 2 Mar 2026 at 10:00, Ann Rep <ann@acme.example> wrote:\n"
        "> Unsubscribe: https://example/u/x\n"
    )
    [answer] = json.loads(run(folder, "classify", str(reply), "--json").stdout)
    assert answer["kind"] == "reply" and answer["intent"] == "interested"
    assert answer["text"] == "Yes, I am interested. Could we talk on Thursday?"
    assert answer["match"]["method"] == "in_reply_to" and answer["match"]["step"] == 1
    assert set(answer) >= {"file", "bounce", "return_date", "why"}
    timeline = json.loads(run(folder, "prospect", "ann@example.com", "--json").stdout)
    assert "replied" not in {e["type"] for e in timeline["events"]}  # classify changed nothing
    run(folder, "ingest", str(reply), "--now", "2026-03-02T12:00:00Z")
    run(folder, "ingest", str(reply), "--now", "2026-03-02T12:05:00Z")
    view = json.loads(run(folder, "prospect", "ann@example.com", "--json").stdout)
    assert [e["type"] for e in view["events"]].count("replied") == 1
    assert view["enrollments"][0]["state"] == "replied"
    assert view["engaged"] is True and view["score"] == 10
    queue = json.loads(run(folder, "calls", "--json").stdout)
    assert [(c["email"], c["reason"]) for c in queue] == [("ann@example.com", "interested")]


def _people(folder: Path) -> Path:
    csv = folder / "people.csv"
    csv.write_text(
        "email,first_name,company,timezone\nann@example.com,Ann,Volvo,Europe/Stockholm\n"
    )
    return csv


def test_run_sends_due_steps_and_stops_cleanly_on_sigterm(folder: Path) -> None:
    import signal
    import time

    csv = folder / "p.csv"
    csv.write_text("email,first_name,company\neva@example.com,Eva,Volvo\n")
    run(folder, "import", str(csv))
    seq = folder / "sequences" / "inbound_follow_up.yaml"
    text = seq.read_text().replace('window: "09:00-17:00"', 'window: "00:00-24:00"')
    seq.write_text(
        text.replace("days: [mon, tue, wed, thu, fri]", "days: [mon, tue, wed, thu, fri, sat, sun]")
    )
    run(folder, "enroll", "inbound_follow_up", "eva@example.com")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env["OUTREACH_TICK_SECONDS"] = "0.2"
    process = subprocess.Popen(
        [sys.executable, "-m", "outreach", "run"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list((folder / "outbox").glob("*.eml")):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    [message] = (folder / "outbox").glob("*.eml")
    assert "eva@example.com" in message.read_text()


def test_serve_answers_the_api_and_stops_on_sigterm(folder: Path) -> None:
    import signal
    import time

    import httpx

    from tests.conftest_smtp import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env["OUTREACH_API_TOKENS"] = "cli-token"
    process = subprocess.Popen(
        [sys.executable, "-m", "outreach", "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.json() == {"database": "ok", "broker": "ok"}
        assert httpx.get(f"{base}/api/calls").status_code == 401
        calls = httpx.get(f"{base}/api/calls", headers={"Authorization": "Bearer cli-token"})
        assert calls.status_code == 200 and calls.json() == []
        assert httpx.get(f"{base}/calls", follow_redirects=False).status_code == 303
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then ends by the signal it caught (-15), as it should
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
