"""Fuzzing sequence YAML: any file gives a Sequence or errors that each read `path:line: ...`."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from outreach.errors import InputError, SequenceInvalid
from outreach.sequence import Sequence, load_sequence, validate_folder
from tests.fuzz.conftest import fuzz_settings

ROOT = Path(__file__).resolve().parents[2]
LINE_RE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): ")

BASE: dict[str, Any] = {
    "name": "Fuzz",
    "sender": {
        "from": ["Ann Rep <ann@acme.example>", "Bo Rep <bo@acme.example>"],
        "reply_to": "sales@acme.example",
        "address": "Acme AB, Box 1, 111 22 Stockholm",
    },
    "schedule": {
        "timezone": "Europe/Stockholm",
        "window": "08:30-16:30",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "holidays": "SE",
        "daily_limit": 100,
        "hourly_limit": 20,
    },
    "exclusive": True,
    "stop_on": ["reply", "bounce", "unsubscribe"],
    "on_auto_reply": "pause 5 days",
    "engagement": {"open": 1, "click": 3, "reply": 10, "threshold": 5},
    "tracking": False,
    "steps": [
        {"email": {"template": "first_touch"}},
        {"wait": "3 business days"},
        {"email": {"template": "follow_up", "thread": True}},
        {"wait": "2 days"},
        {"call": {"note": "Call {{ prospect.first_name }} at {{ prospect.company }}"}},
        {"wait": "1 hour"},
        {"email": {"variants": ["breakup_a", "breakup_b"]}},
    ],
}

ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\t",
        "\u200b",
        "\ufeff",
        "Ärende ✉️",
        "\U0001d56c\U0001d593\U0001d593",
        "\u202e",
        "a\x00b",
        "\U0010ffff",
        "{{",
        "{% for %}",
        "{{ prospect.x | nope }}",
        "null",
        "~",
        "yes",
        "0x1F",
        "0o17",
        "1_000",
        "1e309",
        ".nan",
        "-.inf",
        "190:20:30",
        "2026-01-01",
        "../../etc/passwd",
        "first_touch.html",
        "a" * 300,
    ]
)
BAD_DURATION = st.sampled_from(
    [
        "3 dayz",
        "-1 days",
        "1.5 days",
        "99999999999999999999999999 days",
        "0 minutes",
        "days",
        "3",
        "٣ days",
        "3 business",
        "3  BUSINESS   DAYS",
        "pause",
        "pause -2 days",
        "pause 3 weeks",
        "stop now",
        "IGNORE",
    ]
)
BAD_WINDOW = st.sampled_from(
    [
        "25:00-26:00",
        "08:30-08:30",
        "17:00-09:00",
        "24:00-24:01",
        "00:00-24:00",
        "8-17",
        "08:60-09:00",
        "\u0660\u0668:\u0660\u0660-\u0661\u0667:\u0660\u0660",
        "99999999999999999999:00-1:00",
        "08:00 - 17:00",
    ]
)
BAD_ZONE = st.sampled_from(
    [
        "Mars/Olympus",
        "utc",
        "UTC",
        "Etc/GMT+14",
        "/etc/passwd",
        "../../../etc/passwd",
        "Europe/",
        "Europe//Stockholm",
        "posix/Europe/Stockholm",
        "a" * 5000,
        "\x00",
        "Europe/Stockholm\n",
    ]
)
BAD_COUNTRY = st.sampled_from(["XX", "se", "US-CA", "US-ZZ", "-", "", "U", "GB-ENG-X", "ÅÄ"])
EXTRA_KEYS = st.sampled_from(["unknown", "Name", "step", "steps ", "é", "1", "true", "null"])

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**50), max_value=10**50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    ODD_TEXT,
    BAD_DURATION,
    BAD_WINDOW,
    BAD_ZONE,
    BAD_COUNTRY,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), EXTRA_KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)


def _containers(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a dict or list inside doc (the root included)."""
    found = [path]
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        if isinstance(value, (dict, list)):
            found += _containers(value, (*path, key))
    return found


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """The base sequence with a few mutations: values replaced, keys removed or added."""
    doc: Any = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        if not isinstance(doc, (dict, list)):
            break
        target = _at(doc, draw(st.sampled_from(_containers(doc))))
        keys = list(target.keys()) if isinstance(target, dict) else list(range(len(target)))
        action = draw(st.sampled_from(["replace", "delete", "add", "root"]))
        if action == "root":
            doc = draw(VALUES)
        elif action == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(VALUES)
        elif action == "delete" and keys:
            del target[draw(st.sampled_from(keys))]
        elif isinstance(target, dict):
            target[draw(st.one_of(EXTRA_KEYS, st.text(max_size=8)))] = draw(VALUES)
        else:
            target.insert(draw(st.integers(0, len(target))), draw(VALUES))
    return doc


@st.composite
def yaml_bytes(draw: st.DrawFn) -> bytes:
    """A mutated document dumped to YAML, then perhaps damaged as text or bytes."""
    doc = draw(mutated_documents())
    text = yaml.safe_dump(
        doc,
        allow_unicode=draw(st.booleans()),
        default_flow_style=draw(st.sampled_from([False, True, None])),
        sort_keys=False,
        width=draw(st.sampled_from([80, 20, 10_000])),
    )
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        where = draw(st.integers(min_value=0, max_value=len(text)))
        damage = draw(
            st.sampled_from(["insert", "cut", "truncate", "dup_line", "tab", "anchor", "none"])
        )
        if damage == "insert":
            junk = draw(
                st.one_of(
                    st.text(max_size=6),
                    st.sampled_from(
                        [
                            ":",
                            "- ",
                            "[",
                            "{",
                            "'",
                            '"',
                            "&a ",
                            "*a",
                            "!!python/name:os.system",
                            "\n  ",
                            "%YAML 1.1\n",
                            "---\n",
                            "...\n",
                            "? ",
                        ]
                    ),
                )
            )
            text = text[:where] + junk + text[where:]
        elif damage == "cut":
            text = text[:where] + text[where + draw(st.integers(1, 10)) :]
        elif damage == "truncate":
            text = text[:where]
        elif damage == "dup_line":
            lines = text.splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines.insert(i, lines[i])
                text = "".join(lines)
        elif damage == "tab":
            text = text.replace("  ", "\t", 1)
        elif damage == "anchor":
            text = text + "extra: &x [*x]\n"
    raw = text.encode("utf-8")
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00"]))
    raw = prefix + raw
    if draw(st.booleans()):
        raw = raw.replace(b"\n", b"\r\n")
    if raw and draw(st.integers(0, 9)) == 0:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
    return raw


def assert_error_lines(message: str, allowed: list[Path]) -> None:
    """Every line of the message reads `path:line: ...` with a path we know about."""
    prefixes = tuple(str(p) for p in allowed)
    lines = message.split("\n")
    assert lines, message
    for line in lines:
        match = LINE_RE.match(line)
        assert match, f"not `path:line: ...`: {line!r}"
        assert match["path"].startswith(prefixes), line
        assert int(match["line"]) >= 1, line


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    sequences, templates = tmp_path / "sequences", tmp_path / "templates"
    if not templates.exists():
        shutil.copytree(ROOT / "templates", templates)
    sequences.mkdir(exist_ok=True)
    return sequences, templates


def _load(path: Path, templates: Path) -> Sequence | None:
    try:
        return load_sequence(path, templates)
    except SequenceInvalid as exc:
        assert exc.errors, "SequenceInvalid without errors"
        assert_error_lines(str(exc), [path, templates])
        return None
    except InputError as exc:
        assert_error_lines(str(exc), [path, templates])
        return None


def test_base_document_is_valid(tmp_path: Path) -> None:
    sequences, templates = _folder(tmp_path)
    path = sequences / "base.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False), encoding="utf-8")
    loaded = load_sequence(path, templates)
    assert loaded.id == "base" and len(loaded.steps) == 4


@fuzz_settings(60)
@given(raw=yaml_bytes())
def test_mutated_sequence_loads_or_reports_lines(tmp_path: Path, raw: bytes) -> None:
    sequences, templates = _folder(tmp_path)
    path = sequences / "fuzzed.yaml"
    path.write_bytes(raw)
    loaded = _load(path, templates)
    if loaded is not None:
        assert loaded.id == "fuzzed"
        assert loaded.steps


@fuzz_settings(40)
@given(text=st.text(max_size=300))
def test_arbitrary_text_loads_or_reports_lines(tmp_path: Path, text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    sequences, templates = _folder(tmp_path)
    path = sequences / "text.yaml"
    path.write_bytes(raw)
    _load(path, templates)


@fuzz_settings(25)
@given(raw=yaml_bytes())
def test_broken_file_does_not_hide_a_good_one(tmp_path: Path, raw: bytes) -> None:
    sequences, templates = _folder(tmp_path)
    for old in sequences.iterdir():
        old.unlink()
    good = sequences / "good.yaml"
    good.write_text(yaml.safe_dump(BASE, sort_keys=False), encoding="utf-8")
    broken = sequences / "other.yaml"
    broken.write_bytes(raw)
    errors = validate_folder(sequences, templates)
    for line in errors:
        assert_error_lines(line, [broken, templates])
        assert not line.startswith(str(good) + ":"), line
    # the good sequence is still loaded whatever its neighbour holds
    assert load_sequence(good, templates).id == "good"
    if any(line.startswith(str(broken) + ":") for line in errors):
        with pytest.raises(SequenceInvalid):
            load_sequence(broken, templates)


# --- crashes fuzzing found, fixed: each must be a `path:line:` error -----------

MINIMAL = (
    "name: Demo\n"
    'sender: {from: "Ann <ann@acme.example>", address: "Acme"}\n'
    "steps:\n"
    "  - email: {template: first_touch}\n"
)


def test_deep_nesting_is_reported(tmp_path: Path) -> None:
    sequences, templates = _folder(tmp_path)
    path = sequences / "deep.yaml"
    path.write_text(MINIMAL + "tracking: " + "[" * 2000 + "]" * 2000 + "\n", encoding="utf-8")
    with pytest.raises(SequenceInvalid, match=r"deep\.yaml:1: nested too deeply"):
        load_sequence(path, templates)


def test_huge_integer_is_reported(tmp_path: Path) -> None:
    sequences, templates = _folder(tmp_path)
    path = sequences / "huge.yaml"
    path.write_text(MINIMAL + "schedule: {daily_limit: " + "1" * 4301 + "}\n", encoding="utf-8")
    with pytest.raises(SequenceInvalid, match=r"huge\.yaml:5: schedule\.daily_limit: .*too large"):
        load_sequence(path, templates)


def test_validate_folder_survives_a_crashing_neighbour(tmp_path: Path) -> None:
    sequences, templates = _folder(tmp_path)
    (sequences / "good.yaml").write_text(MINIMAL, encoding="utf-8")
    bad = sequences / "bad.yaml"
    bad.write_text(MINIMAL + "schedule: {daily_limit: " + "1" * 4301 + "}\n", encoding="utf-8")
    errors = validate_folder(sequences, templates)
    assert errors and all(line.startswith(str(bad) + ":") for line in errors)
    assert load_sequence(sequences / "good.yaml", templates).id == "good"


def test_unprintable_character_error_is_one_line(tmp_path: Path) -> None:
    sequences, templates = _folder(tmp_path)
    path = sequences / "nul.yaml"
    path.write_bytes(b"steps: []\nname: \x00\n")
    with pytest.raises(SequenceInvalid) as caught:
        load_sequence(path, templates)
    expected = "YAML cannot hold the character U+0000 (special characters are not allowed)"
    assert caught.value.errors == [f"{path}:2: {expected}"]
