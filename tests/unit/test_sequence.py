"""Sequence files are checked as a whole; every error reads `path:line: message`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from outreach.errors import SequenceInvalid
from outreach.schedule import Wait, Window
from outreach.sequence import (
    AutoReplyPolicy,
    Engagement,
    Sequence,
    load_all,
    load_sequence,
    parse_auto_reply,
    validate_folder,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("inbound_follow_up", "cold_outbound")
SHIPPED_TEMPLATES = (
    "first_touch",
    "follow_up",
    "breakup_a",
    "breakup_b",
    "cold_intro_a",
    "cold_intro_b",
    "cold_bump",
    "cold_value",
    "cold_breakup",
)
MISSING_TEMPLATES = [
    name for name in SHIPPED_TEMPLATES if not (REPO / "templates" / f"{name}.j2").is_file()
]

MINIMAL = """\
name: Demo
sender:
  from: "Ann Rep <ann@acme.example>"
  address: "Acme AB, Box 1, 111 22 Stockholm"
steps:
  - email:
      template: hello
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def template(
    folder: Path, name: str, body: str, subject: str | None = "Hi {{ prospect.first_name }}"
) -> Path:
    front = f'---\nsubject: "{subject}"\n---\n' if subject is not None else ""
    return write(folder / f"{name}.j2", front + body)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with sequences/ and templates/, entered so paths stay relative."""
    monkeypatch.chdir(tmp_path)
    for name in ("hello", "bump", "ab_a", "ab_b"):
        template(tmp_path / "templates", name, "Hello {{ prospect.first_name }},\n\nAnn\n")
    template(tmp_path / "templates", "threaded", "Just bumping this.\n", subject=None)
    return tmp_path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(SequenceInvalid) as caught:
        load_sequence(path, Path("templates"))
    return caught.value.errors


# --- shipped examples ----------------------------------------------------------


@pytest.mark.skipif(
    bool(MISSING_TEMPLATES), reason=f"templates/ lacks {', '.join(MISSING_TEMPLATES)}.j2"
)
@pytest.mark.parametrize("sequence_id", SHIPPED)
def test_shipped_examples_validate(sequence_id: str) -> None:
    sequence = load_sequence(REPO / "sequences" / f"{sequence_id}.yaml", REPO / "templates")
    assert sequence.id == sequence_id
    assert sequence.steps[0].kind == "email"
    assert all(name in sequence.templates for step in sequence.steps for name in step.templates)


@pytest.mark.skipif(
    bool(MISSING_TEMPLATES), reason=f"templates/ lacks {', '.join(MISSING_TEMPLATES)}.j2"
)
def test_shipped_folder_has_no_errors() -> None:
    assert validate_folder(REPO / "sequences", REPO / "templates") == []


def test_shipped_examples_only_lack_templates_if_any(tmp_path: Path) -> None:
    """Whatever templates/ holds, the YAML itself is right."""
    for name in SHIPPED_TEMPLATES:
        template(tmp_path, name, "Hello {{ prospect.first_name }}\n")
    inbound = load_sequence(REPO / "sequences" / "inbound_follow_up.yaml", tmp_path)
    cold = load_sequence(REPO / "sequences" / "cold_outbound.yaml", tmp_path)
    assert [s.kind for s in inbound.steps] == ["email", "email", "call", "email"]
    assert inbound.steps[1].waits == [Wait(amount=2, unit="business_days")]
    assert inbound.steps[3].templates == ["breakup_a", "breakup_b"]
    assert inbound.schedule.holidays == "SE" and inbound.tracking
    assert cold.sender.addresses == ["Ann Rep <ann@acme.example>", "Bo Rep <bo@acme.example>"]
    assert cold.stop_on == ["reply", "bounce", "unsubscribe", "company_reply"]
    assert cold.on_auto_reply == AutoReplyPolicy(action="pause", delay=Wait(amount=5, unit="days"))
    assert cold.schedule.window == Window(start=510, end=990) and not cold.tracking
    assert [s.number for s in cold.steps] == [1, 2, 3, 4, 5]


# --- a valid file --------------------------------------------------------------


def test_minimal_sequence_gets_the_defaults(folder: Path) -> None:
    sequence = load_sequence(write(Path("sequences") / "demo.yaml", MINIMAL), Path("templates"))
    assert sequence.id == "demo"
    assert sequence.sender.addresses == ["Ann Rep <ann@acme.example>"]
    assert sequence.sender.reply_to is None
    assert sequence.schedule.timezone == "UTC"
    assert sequence.schedule.window == Window(start=540, end=1020)
    assert sequence.schedule.days == frozenset({0, 1, 2, 3, 4})
    assert sequence.exclusive is True and sequence.tracking is False
    assert sequence.stop_on == ["reply", "bounce", "unsubscribe"]
    assert sequence.on_auto_reply == AutoReplyPolicy(
        action="pause", delay=Wait(amount=3, unit="days")
    )
    assert sequence.engagement == Engagement(open=1, click=3, reply=10, threshold=5)
    assert sequence.step(1).templates == ["hello"] and sequence.step(1).line == 6
    assert list(sequence.templates) == ["hello"]
    with pytest.raises(IndexError):
        sequence.step(2)


def test_steps_number_emails_calls_and_tasks_and_carry_their_waits(folder: Path) -> None:
    path = write(
        Path("sequences") / "full.yaml",
        """\
        name: Full
        sender:
          from: ["Ann Rep <ann@acme.example>", "bo@acme.example"]
          reply_to: ann@acme.example
          address: Acme AB
        on_auto_reply: stop
        steps:
          - wait: 30 minutes
          - email: {template: hello}
          - wait: 1 day
          - wait: 2 hours
          - email: {template: threaded, thread: true}
          - task: {note: "Connect with {{ prospect.first_name }} on LinkedIn"}
          - call:
          - email: {variants: [ab_a, ab_b]}
        """,
    )
    sequence = load_sequence(path, Path("templates"))
    steps = sequence.steps
    assert [(s.number, s.kind, s.line) for s in steps] == [
        (1, "email", 9),
        (2, "email", 12),
        (3, "task", 13),
        (4, "call", 14),
        (5, "email", 15),
    ]
    assert steps[0].waits == [Wait(amount=30, unit="minutes")]
    assert steps[1].waits == [Wait(amount=1, unit="days"), Wait(amount=2, unit="hours")]
    assert steps[1].thread and steps[2].waits == []
    assert steps[2].note == "Connect with {{ prospect.first_name }} on LinkedIn"
    assert steps[3].note is None
    assert sequence.on_auto_reply == AutoReplyPolicy(action="stop", delay=None)
    assert sorted(sequence.templates) == ["ab_a", "ab_b", "hello", "threaded"]


def test_round_trip_through_json_is_equal(folder: Path) -> None:
    sequence = load_sequence(write(Path("sequences") / "demo.yaml", MINIMAL), Path("templates"))
    assert Sequence.model_validate(sequence.model_dump(mode="json")) == sequence


def test_content_hash_is_stable_and_follows_the_templates(folder: Path) -> None:
    path = write(Path("sequences") / "demo.yaml", MINIMAL)
    first = load_sequence(path, Path("templates")).content_hash
    assert load_sequence(path, Path("templates")).content_hash == first
    template(folder / "templates", "hello", "Hello again {{ prospect.first_name }},\n")
    second = load_sequence(path, Path("templates")).content_hash
    assert second != first
    write(folder / "templates" / "hello.html.j2", "<p>Hello</p>\n")
    assert load_sequence(path, Path("templates")).content_hash not in (first, second)
    template(folder / "templates", "bump", "an unused template changed\n")
    assert load_sequence(path, Path("templates")).content_hash not in (first, second)


def test_content_hash_ignores_unused_templates(folder: Path) -> None:
    path = write(Path("sequences") / "demo.yaml", MINIMAL)
    before = load_sequence(path, Path("templates")).content_hash
    template(folder / "templates", "bump", "an unused template changed\n")
    assert load_sequence(path, Path("templates")).content_hash == before


# --- an invalid file -----------------------------------------------------------


def test_every_error_is_reported_with_its_line(folder: Path) -> None:
    template(folder / "templates", "broken", "Hello {{ prospect.first_name }\n")
    path = write(
        Path("sequences") / "bad.yaml",
        """\
        name: Broken on purpose
        sender:
          from: "Ann Rep <ann@acme.example>"
          address: Acme AB
          signature: Ann
        schedule:
          timezone: Europe/Stokholm
          window: "18:00-08:00"
        steps:
          - email:
              template: threaded
              thread: true
          - wait: 2 fortnights
          - email:
              template: foo
          - email:
              variants: [ab_a]
          - email:
              template: broken
        """,
    )
    assert errors_of(path) == [
        "sequences/bad.yaml:5: sender.signature: unknown key (allowed: from, reply_to, address)",
        "sequences/bad.yaml:7: schedule.timezone: unknown timezone 'Europe/Stokholm'"
        " (use an IANA name like Europe/Stockholm)",
        "sequences/bad.yaml:8: schedule.window: bad window '18:00-08:00': the start must be"
        " before the end (windows across midnight are not supported;"
        " use '00:00-24:00' for the whole day)",
        "sequences/bad.yaml:12: steps[0].email.thread: the first email cannot continue a thread",
        "sequences/bad.yaml:13: steps[1].wait: bad duration '2 fortnights': write a whole number"
        " and a unit, e.g. '30 minutes', '3 hours', '2 days' or '2 business days'",
        "sequences/bad.yaml:15: steps[2].email.template: unknown template 'foo'"
        " (no templates/foo.j2)",
        "sequences/bad.yaml:17: steps[3].email.variants: an A/B test needs at least two"
        " different templates",
        *[e for e in errors_of(path) if e.startswith("templates/broken.j2:")],
    ]
    template_errors = [e for e in errors_of(path) if e.startswith("templates/broken.j2:")]
    assert len(template_errors) == 1
    assert template_errors[0].startswith("templates/broken.j2:4: ")  # body line 1 is file line 4


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "nmae: X\nsender: {from: a@b.example, address: A}\n"
            "steps:\n  - email: {template: hello}\n",
            "x.yaml:1: nmae: unknown key (allowed: name, sender, schedule, exclusive, stop_on,"
            " on_auto_reply, engagement, tracking, steps)",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\nsteps:\n  - sms: {text: hi}\n",
            "x.yaml:4: steps[0].sms: unknown key (allowed: email, wait, call, task)",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\n"
            "steps:\n  - {email: {template: hello}, wait: 1 day}\n",
            "x.yaml:4: steps[0]: a step needs exactly one of email, wait, call or task",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\nsteps: []\n",
            "x.yaml:3: steps: no steps: add at least one email, call or task",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\n"
            "steps:\n  - email: {template: hello}\n  - wait: 1 day\n",
            "x.yaml:5: steps[1]: the sequence ends with a wait: remove it",
        ),
        (
            "name: X\nsender: {from: not an address, address: A}\n"
            "steps:\n  - email: {template: hello}\n",
            "x.yaml:2: sender.from: 'not an address' is not an email address"
            " like 'Ann Rep <ann@acme.example>'",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\n"
            "steps:\n  - email: {template: threaded}\n",
            "x.yaml:4: steps[0].email.template: template threaded has no subject"
            " (only a threaded email may omit it)",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\n"
            "steps:\n  - email: {template: hello}\n  - wait: 1 day\n"
            "  - call: {note: 'Call {{ prospect.first_name }'}\n",
            "x.yaml:6: steps[2].call.note: template syntax error: unexpected '}'",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\n"
            "schedule: {days: [mon, funday], holidays: XX, daily_limit: 0}\n"
            "steps:\n  - email: {template: hello}\n",
            "x.yaml:3: schedule.days[1]: unknown day 'funday'"
            " (use mon, tue, wed, thu, fri, sat, sun)",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\n"
            "on_auto_reply: pause for a while\nsteps:\n  - email: {template: hello}\n",
            "x.yaml:3: on_auto_reply: bad duration 'for a while': write a whole number and a unit,"
            " e.g. '30 minutes', '3 hours', '2 days' or '2 business days'",
        ),
        (
            "name: X\nsender: {address: A}\n"
            "steps:\n  - email: {template: hello, variants: [a, b]}\n",
            "x.yaml:2: sender.from: missing (required)",
        ),
        (
            "name: X\nsender: {from: a@b.example, address: A}\nsteps:\n  - email: {template: [x\n",
            "x.yaml:5: YAML syntax error:",
        ),
    ],
)
def test_each_kind_of_error(folder: Path, yaml_text: str, expected: str) -> None:
    errors = errors_of(write(Path("x.yaml"), yaml_text))
    assert any(error.startswith(expected) for error in errors), errors


def test_schedule_errors_are_all_collected(folder: Path) -> None:
    path = write(
        Path("x.yaml"),
        "name: X\nsender: {from: a@b.example, address: A}\n"
        "schedule: {days: [mon, funday], holidays: XX, daily_limit: 0, hourly_limit: many}\n"
        "stop_on: [reply, retweet]\nengagement: {open: -1}\ntracking: maybe\n"
        "steps:\n  - email: {template: hello, variants: [a, b]}\n",
    )
    assert [e.split(": ")[1] for e in errors_of(path)] == [
        "schedule.days[1]",
        "schedule.holidays",
        "schedule.daily_limit",
        "schedule.hourly_limit",
        "stop_on[1]",
        "engagement.open",
        "tracking",
        "steps[0].email",
    ]


def test_parse_auto_reply() -> None:
    assert parse_auto_reply("pause 2 business days") == AutoReplyPolicy(
        action="pause", delay=Wait(amount=2, unit="business_days")
    )
    assert parse_auto_reply("ignore") == AutoReplyPolicy(action="ignore", delay=None)
    with pytest.raises(ValueError, match="on_auto_reply"):
        parse_auto_reply("snooze")


def test_quoted_country_codes_that_yaml_reads_as_booleans_work(folder: Path) -> None:
    path = write(Path("no.yaml"), MINIMAL + "schedule:\n  holidays: NO\n")
    assert load_sequence(path, Path("templates")).schedule.holidays == "NO"


# --- folders -------------------------------------------------------------------


def test_load_all_and_validate_folder(folder: Path) -> None:
    write(Path("sequences") / "good.yaml", MINIMAL)
    write(Path("sequences") / "bad.yml", MINIMAL.replace("hello", "nope"))
    write(Path("sequences") / "notes.txt", "not a sequence")
    template(folder / "templates", "unused", "{% if %}\n")
    found, errors = load_all(Path("sequences"), Path("templates"))
    assert list(found) == ["good"]
    assert errors == [
        "sequences/bad.yml:7: steps[0].email.template: unknown template 'nope'"
        " (no templates/nope.j2)"
    ]
    report = validate_folder(Path("sequences"), Path("templates"))
    assert report[0] == errors[0]
    assert len(report) == 2 and report[1].startswith("templates/unused.j2:4: ")


def test_template_names_cannot_leave_the_templates_folder(folder: Path) -> None:
    path = write(Path("x.yaml"), MINIMAL.replace("hello", "../secrets"))
    assert errors_of(path) == [
        "x.yaml:7: steps[0].email.template: bad template name '../secrets'"
        " (letters, digits, _ . and - only)"
    ]
