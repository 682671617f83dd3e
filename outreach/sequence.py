"""Sequences: load and check sequence YAML files as a whole; errors read `path:line: message`.

Every problem in a file is collected (unknown keys, wrong types, bad durations, windows,
timezones, holiday countries, addresses, missing templates, template syntax errors...)
and raised together as one `SequenceInvalid`. Field paths in messages count list items
from 0, the way `steps[2]` is written in code; the line number points at the YAML.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel

from outreach.errors import SequenceInvalid, TemplateInvalid
from outreach.schedule import (
    Schedule,
    Wait,
    Window,
    check_country,
    parse_wait,
    parse_window,
    valid_zone,
)
from outreach.template import TemplateSource, load_template

STOP_EVENTS = ("reply", "bounce", "unsubscribe", "company_reply", "auto_reply")
DEFAULT_STOP_ON = ("reply", "bounce", "unsubscribe")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ERROR_RE = re.compile(r"(.*?):(\d+):")
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_CONSTRUCTOR = yaml.SafeLoader("")
_JINJA = ImmutableSandboxedEnvironment()


class Sender(BaseModel, frozen=True):
    """Who a sequence sends as: `addresses` are the "from" entries as written."""

    addresses: list[str]
    reply_to: str | None = None
    address: str


class Engagement(BaseModel, frozen=True):
    """Points per open, click and reply; reaching `threshold` flags the prospect for a call."""

    open: int = 1
    click: int = 3
    reply: int = 10
    threshold: int = 5


class AutoReplyPolicy(BaseModel, frozen=True):
    """What an out-of-office reply does: pause for `delay`, stop, or nothing."""

    action: Literal["pause", "stop", "ignore"]
    delay: Wait | None = None


class Step(BaseModel, frozen=True):
    """One email, call or task; `waits` are those written between the previous step and it."""

    number: int
    kind: Literal["email", "call", "task"]
    waits: list[Wait]
    templates: list[str] = []
    thread: bool = False
    note: str | None = None
    line: int


class Sequence(BaseModel, frozen=True):
    """A checked sequence with a snapshot of every template its steps use."""

    id: str
    name: str
    sender: Sender
    schedule: Schedule
    exclusive: bool
    stop_on: list[str]
    on_auto_reply: AutoReplyPolicy
    engagement: Engagement
    tracking: bool
    steps: list[Step]
    templates: dict[str, TemplateSource]
    content_hash: str

    def step(self, number: int) -> Step:
        """Step `number` (1-based); IndexError when there is no such step."""
        if not 1 <= number <= len(self.steps):
            raise IndexError(f"sequence {self.id} has no step {number} ({len(self.steps)} steps)")
        return self.steps[number - 1]


# --- public entry points ---------------------------------------------------


def load_sequence(path: Path, templates_dir: Path) -> Sequence:
    """Load and check one sequence file (id = file stem); raise SequenceInvalid with every error."""
    raw = _read(path)
    checker = _Checker(str(path), templates_dir)
    try:
        root = _compose(checker, raw)
        data = _document(checker, root) if root is not None else None
    except RecursionError:
        checker.error(1, "", "nested too deeply to read (lists or maps inside each other)")
        data = None
    if checker.errors or data is None:
        raise SequenceInvalid(checker.errors or [f"{path}:1: empty file"])
    return _build(path, raw, data, checker)


def load_all(sequences_dir: Path, templates_dir: Path) -> tuple[dict[str, Sequence], list[str]]:
    """Every valid sequence in the folder by id, and every error line of the invalid ones."""
    found: dict[str, Sequence] = {}
    errors: list[str] = []
    seen: set[str] = set()
    for path in sequence_files(sequences_dir):
        if path.stem in seen:
            errors.append(f"{path}:1: another file already defines sequence {path.stem!r}")
            continue
        seen.add(path.stem)
        try:
            found[path.stem] = load_sequence(path, templates_dir)
        except SequenceInvalid as exc:
            errors.extend(exc.errors)
        except Exception as exc:  # a reader's bug must not hide the files around it
            errors.append(f"{path}:1: cannot be read: {type(exc).__name__}: {exc}")
    return found, errors


def validate_folder(sequences_dir: Path, templates_dir: Path) -> list[str]:
    """Every error across all sequences and all template files (used or not), sorted."""
    _, errors = load_all(sequences_dir, templates_dir)
    errors.extend(template_errors(templates_dir))
    return sorted(set(errors), key=_error_key)


def sequence_files(sequences_dir: Path) -> list[Path]:
    """The *.yaml and *.yml files in a folder (hidden files skipped), sorted by name."""
    if not sequences_dir.is_dir():
        return []
    files = [p for p in sequences_dir.iterdir() if p.suffix in (".yaml", ".yml")]
    return sorted(p for p in files if p.is_file() and not p.name.startswith("."))


def template_errors(templates_dir: Path) -> list[str]:
    """Errors of every template file in the folder, whether a sequence uses it or not."""
    errors: list[str] = []
    for file in sorted(templates_dir.glob("*.j2")) if templates_dir.is_dir() else []:
        name = file.name.removesuffix(".j2")
        if name.endswith(".html"):
            if not (templates_dir / name.replace(".html", ".j2")).is_file():
                errors.append(f"{file}:1: HTML part without a text template {name[:-5]}.j2")
            continue
        try:
            load_template(templates_dir, name)
        except TemplateInvalid as exc:
            errors.append(str(exc))
    return errors


def parse_auto_reply(text: str) -> AutoReplyPolicy:
    """Parse "pause 3 days", "pause 2 business days", "stop" or "ignore"."""
    words = text.strip().lower().split(maxsplit=1)
    if words in (["stop"], ["ignore"]):
        return AutoReplyPolicy(action=words[0], delay=None)  # type: ignore[arg-type]
    if len(words) == 2 and words[0] == "pause":
        return AutoReplyPolicy(action="pause", delay=parse_wait(words[1]))
    raise ValueError(
        f"bad on_auto_reply {text!r}: write 'pause 3 days', 'pause 2 business days', "
        "'stop' or 'ignore'"
    )


def _error_key(line: str) -> tuple[str, int, str]:
    match = _ERROR_RE.match(line)
    return (match[1], int(match[2]), line) if match else (line, 0, line)


# --- reading -----------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SequenceInvalid([f"{path}:1: cannot read the file ({exc.strerror})"]) from exc


def _compose(c: _Checker, raw: bytes) -> yaml.Node | None:
    try:
        return yaml.compose(raw.decode("utf-8-sig"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        c.error(1, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except yaml.reader.ReaderError as exc:
        text = raw.decode("utf-8-sig", "replace")
        line = text.count("\n", 0, exc.position) + 1
        code = (
            exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        )
        c.error(line, "", f"YAML cannot hold the character U+{code:04X} ({exc.reason})")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        c.error(mark.line + 1 if mark else 1, "", f"YAML syntax error: {exc.problem}")
    except yaml.YAMLError as exc:
        c.error(1, "", f"YAML syntax error: {exc}")
    return None


def _build(path: Path, raw: bytes, data: dict[str, Any], c: _Checker) -> Sequence:
    names = sorted(c.templates)
    data["id"] = path.stem
    data["templates"] = {name: c.templates[name] for name in names}
    data["content_hash"] = content_hash(raw, names, c.templates_dir)
    return Sequence.model_validate(data)


def content_hash(raw: bytes, template_names: Iterable[str], templates_dir: Path) -> str:
    """sha256 over the sequence YAML and every named template's files (text and HTML)."""
    digest = hashlib.sha256()
    _feed(digest, "sequence", raw)
    for name in sorted(template_names):
        for file in (templates_dir / f"{name}.j2", templates_dir / f"{name}.html.j2"):
            if file.is_file():
                _feed(digest, file.name, file.read_bytes())
    return digest.hexdigest()


def _feed(digest: Any, label: str, data: bytes) -> None:
    digest.update(f"{label}\0{len(data)}\0".encode())
    digest.update(data)


# --- the checker and YAML node helpers --------------------------------------


class _Checker:
    """Collects the errors of one file and the templates its steps load."""

    def __init__(self, path: str, templates_dir: Path) -> None:
        self.path = path
        self.templates_dir = templates_dir
        self.errors: list[str] = []
        self.templates: dict[str, TemplateSource] = {}
        self.broken: set[str] = set()

    def error(self, at: yaml.Node | int, where: str, message: str) -> None:
        line = at if isinstance(at, int) else _line(at)
        self.errors.append(f"{self.path}:{line}: {where + ': ' if where else ''}{message}")

    def template(self, name: str, node: yaml.Node, where: str) -> TemplateSource | None:
        file = self.templates_dir / f"{name}.j2"
        if not file.is_file():
            self.error(node, where, f"unknown template {name!r} (no {file})")
            return None
        if name not in self.templates and name not in self.broken:
            self._load(name)
        return self.templates.get(name)

    def _load(self, name: str) -> None:
        try:
            self.templates[name] = load_template(self.templates_dir, name)
        except TemplateInvalid as exc:
            self.broken.add(name)
            self.errors.append(str(exc))


Parser = Callable[[_Checker, yaml.Node, str], Any]


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "nothing" if node.tag == _NULL else repr(node.value)


def _mapping(
    c: _Checker, node: yaml.Node, where: str, allowed: Collection[str], required: Iterable[str] = ()
) -> dict[str, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        c.error(node, where, f"expected a mapping ({', '.join(allowed)}), got {_kind(node)}")
        return None
    found: dict[str, yaml.Node] = {}
    for key, value in node.value:
        _add_key(c, found, key, value, where, allowed)
    for name in required:
        if name not in found:
            c.error(node, _join(where, name), "missing (required)")
    return found


def _add_key(
    c: _Checker,
    found: dict[str, yaml.Node],
    key: yaml.Node,
    value: yaml.Node,
    where: str,
    allowed: Collection[str],
) -> None:
    name = key.value if isinstance(key, yaml.ScalarNode) else _kind(key)
    if name not in allowed:
        c.error(key, _join(where, str(name)), f"unknown key (allowed: {', '.join(allowed)})")
    elif name in found:
        c.error(key, _join(where, name), "duplicate key")
    else:
        found[name] = value


def _fields(
    c: _Checker,
    node: yaml.Node,
    where: str,
    parsers: dict[str, Parser],
    required: Iterable[str] = (),
) -> dict[str, Any]:
    keys = _mapping(c, node, where, parsers, required) or {}
    return {name: parsers[name](c, value, _join(where, name)) for name, value in keys.items()}


def _text(c: _Checker, node: yaml.Node, where: str) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag != _NULL and node.value.strip():
        return str(node.value).strip()
    c.error(node, where, f"expected text, got {_kind(node)}")
    return None


def _bool(c: _Checker, node: yaml.Node, where: str) -> bool | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
        return bool(_CONSTRUCTOR.construct_yaml_bool(node))
    c.error(node, where, f"expected true or false, got {_kind(node)}")
    return None


def _int(c: _Checker, node: yaml.Node, where: str, minimum: int) -> int | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
        try:
            value = int(_CONSTRUCTOR.construct_yaml_int(node))
        except ValueError:  # more digits than Python turns into an int
            c.error(node, where, f"the number is too large ({len(node.value)} characters)")
            return None
        if value >= minimum:
            return value
    c.error(node, where, f"expected a whole number of at least {minimum}, got {_kind(node)}")
    return None


def _positive(c: _Checker, node: yaml.Node, where: str) -> int | None:
    return _int(c, node, where, 1)


def _points(c: _Checker, node: yaml.Node, where: str) -> int | None:
    return _int(c, node, where, 0)


def _list(c: _Checker, node: yaml.Node, where: str) -> list[yaml.Node] | None:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    c.error(node, where, f"expected a list, got {_kind(node)}")
    return None


def _texts(c: _Checker, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node, str]]:
    items = _list(c, node, where) or []
    found = [
        (_text(c, item, f"{where}[{i}]"), item, f"{where}[{i}]") for i, item in enumerate(items)
    ]
    return [(text, item, at) for text, item, at in found if text is not None]


# --- sections -----------------------------------------------------------------


def _document(c: _Checker, root: yaml.Node) -> dict[str, Any]:
    data = _defaults()
    data.update(_fields(c, root, "", _TOP, required=("name", "sender", "steps")))
    return data


def _defaults() -> dict[str, Any]:
    return {
        "schedule": _schedule_defaults(),
        "exclusive": True,
        "stop_on": list(DEFAULT_STOP_ON),
        "on_auto_reply": AutoReplyPolicy(action="pause", delay=Wait(amount=3, unit="days")),
        "engagement": Engagement(),
        "tracking": False,
    }


def _schedule_defaults() -> dict[str, Any]:
    return {"timezone": "UTC", "window": Window(start=9 * 60, end=17 * 60), "days": [0, 1, 2, 3, 4]}


def _sender(c: _Checker, node: yaml.Node, where: str) -> dict[str, Any]:
    fields = _fields(c, node, where, _SENDER, required=("from", "address"))
    fields["addresses"] = fields.pop("from", None)
    return fields


def _from(c: _Checker, node: yaml.Node, where: str) -> list[str] | None:
    if isinstance(node, yaml.ScalarNode):
        one = _address(c, node, where)
        return [one] if one else None
    items = _texts(c, node, where)
    if isinstance(node, yaml.SequenceNode) and not node.value:
        c.error(node, where, "needs at least one address")
    addresses = [_address(c, item, at) for _, item, at in items]
    if len({a.lower() for a in addresses if a}) < len(addresses):
        c.error(node, where, "the same address is listed twice")
    return [a for a in addresses if a]


def _address(c: _Checker, node: yaml.Node, where: str) -> str | None:
    text = _text(c, node, where)
    if text is not None and not is_address(text):
        c.error(node, where, f"{text!r} is not an email address like 'Ann Rep <ann@acme.example>'")
        return None
    return text


def is_address(text: str) -> bool:
    """Whether `text` is one address, bare or with a display name (a simple check)."""
    if any(ch in text for ch in "\r\n\t\0") or len(getaddresses([text])) != 1:
        return False
    address = parseaddr(text)[1]
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and not any(ch.isspace() for ch in address)


def _schedule(c: _Checker, node: yaml.Node, where: str) -> dict[str, Any]:
    data = _schedule_defaults()
    data.update(_fields(c, node, where, _SCHEDULE))
    return data


def _timezone(c: _Checker, node: yaml.Node, where: str) -> str | None:
    text = _text(c, node, where)
    if text is not None and valid_zone(text) is None:
        c.error(node, where, f"unknown timezone {text!r} (use an IANA name like Europe/Stockholm)")
    return text


def _window(c: _Checker, node: yaml.Node, where: str) -> Window | None:
    text = _text(c, node, where)
    return _attempt(c, node, where, parse_window, text) if text is not None else None


def _days(c: _Checker, node: yaml.Node, where: str) -> list[int]:
    days: set[int] = set()
    for text, item, at in _texts(c, node, where):
        day = text.lower()
        if day in DAY_NAMES or day in _FULL_DAY_NAMES:
            days.add(DAY_NAMES.index(day[:3]))
        else:
            c.error(item, at, f"unknown day {text!r} (use {', '.join(DAY_NAMES)})")
    if isinstance(node, yaml.SequenceNode) and not node.value:
        c.error(node, where, "needs at least one day")
    return sorted(days)


def _country(c: _Checker, node: yaml.Node, where: str) -> str | None:
    text = _text(c, node, where)
    if text is not None and _attempt(c, node, where, check_country, text) is not None:
        return text.upper()
    return None


def _stop_on(c: _Checker, node: yaml.Node, where: str) -> list[str]:
    events: list[str] = []
    for text, item, at in _texts(c, node, where):
        if text not in STOP_EVENTS:
            c.error(item, at, f"unknown event {text!r} (use {', '.join(STOP_EVENTS)})")
        elif text not in events:
            events.append(text)
    return events


def _auto_reply(c: _Checker, node: yaml.Node, where: str) -> AutoReplyPolicy | None:
    text = _text(c, node, where)
    return _attempt(c, node, where, parse_auto_reply, text) if text is not None else None


def _engagement(c: _Checker, node: yaml.Node, where: str) -> dict[str, Any]:
    return _fields(c, node, where, _ENGAGEMENT)


def _wait(c: _Checker, node: yaml.Node, where: str) -> Wait | None:
    text = _text(c, node, where)
    return _attempt(c, node, where, parse_wait, text) if text is not None else None


def _note(c: _Checker, node: yaml.Node, where: str) -> str | None:
    text = _text(c, node, where)
    if text is None:
        return None
    try:
        _JINJA.parse(text)
    except TemplateSyntaxError as exc:
        offset = (exc.lineno or 1) - 1 + (1 if getattr(node, "style", None) in ("|", ">") else 0)
        c.error(_line(node) + offset, where, f"template syntax error: {exc.message}")
    return text


def _attempt(
    c: _Checker, node: yaml.Node, where: str, parse: Callable[[str], Any], text: str
) -> Any:
    """`parse(text)`, or None with the ValueError's message recorded."""
    try:
        result = parse(text)
    except ValueError as exc:
        c.error(node, where, str(exc))
        return None
    return True if result is None else result


# --- steps -------------------------------------------------------------------


@dataclass
class _Steps:
    """The steps read so far, and the waits written since the last one."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    waits: list[Wait | None] = field(default_factory=list)

    def has_email(self) -> bool:
        return any(step["kind"] == "email" for step in self.steps)


def _steps(c: _Checker, node: yaml.Node, where: str) -> list[dict[str, Any]]:
    items = _list(c, node, where)
    if items is None:
        return []
    state = _Steps()
    for index, item in enumerate(items):
        _step(c, item, f"{where}[{index}]", state)
    if not items:
        c.error(node, where, "no steps: add at least one email, call or task")
    elif state.waits:
        c.error(items[-1], f"{where}[{len(items) - 1}]", "the sequence ends with a wait: remove it")
    return state.steps


def _step(c: _Checker, item: yaml.Node, where: str, state: _Steps) -> None:
    keys = _mapping(c, item, where, ("email", "wait", "call", "task"))
    if keys is not None and len(keys) != 1 and (len(keys) > 1 or not item.value):
        c.error(item, where, "a step needs exactly one of email, wait, call or task")
    if keys is None or len(keys) != 1:
        return
    ((kind, node),) = keys.items()
    if kind == "wait":
        state.waits.append(_wait(c, node, f"{where}.wait"))
        return
    at = f"{where}.{kind}"
    body = _email(c, node, at, state) if kind == "email" else _activity(c, node, at)
    number = len(state.steps) + 1
    state.steps.append({"number": number, "kind": kind, "waits": state.waits, "line": _line(item)})
    state.steps[-1].update(body)
    state.waits = []


def _activity(c: _Checker, node: yaml.Node, where: str) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return {}
    return _fields(c, node, where, {"note": _note})


def _email(c: _Checker, node: yaml.Node, where: str, state: _Steps) -> dict[str, Any]:
    keys = _mapping(c, node, where, ("template", "variants", "thread"))
    if keys is None:
        return {}
    thread = bool(_bool(c, keys["thread"], f"{where}.thread")) if "thread" in keys else False
    if thread and not state.has_email():
        c.error(keys["thread"], f"{where}.thread", "the first email cannot continue a thread")
    names = _email_templates(c, node, where, keys)
    for name, at_node, at in names:
        _check_template(c, name, at_node, at, thread)
    return {"templates": [name for name, _, _ in names], "thread": thread}


def _email_templates(
    c: _Checker, node: yaml.Node, where: str, keys: dict[str, yaml.Node]
) -> list[tuple[str, yaml.Node, str]]:
    if ("template" in keys) == ("variants" in keys):
        c.error(node, where, "needs exactly one of template or variants")
        return []
    if "template" in keys:
        at = f"{where}.template"
        name = _text(c, keys["template"], at)
        return [(name, keys["template"], at)] if name else []
    return _variants(c, keys["variants"], f"{where}.variants")


def _variants(c: _Checker, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node, str]]:
    items = _texts(c, node, where)
    names = [name for name, _, _ in items]
    if len(set(names)) != len(names):
        c.error(node, where, "a template is listed twice")
    if isinstance(node, yaml.SequenceNode) and len(set(names)) < 2:
        c.error(node, where, "an A/B test needs at least two different templates")
    return items


def _check_template(c: _Checker, name: str, node: yaml.Node, where: str, thread: bool) -> None:
    if not _NAME_RE.fullmatch(name) or name.endswith(".html"):
        c.error(node, where, f"bad template name {name!r} (letters, digits, _ . and - only)")
        return
    source = c.template(name, node, where)
    if source is not None and not thread and not (source.subject or "").strip():
        c.error(node, where, f"template {name} has no subject (only a threaded email may omit it)")


_TOP: dict[str, Parser] = {
    "name": _text,
    "sender": _sender,
    "schedule": _schedule,
    "exclusive": _bool,
    "stop_on": _stop_on,
    "on_auto_reply": _auto_reply,
    "engagement": _engagement,
    "tracking": _bool,
    "steps": _steps,
}
_SENDER: dict[str, Parser] = {"from": _from, "reply_to": _address, "address": _text}
_SCHEDULE: dict[str, Parser] = {
    "timezone": _timezone,
    "window": _window,
    "days": _days,
    "holidays": _country,
    "daily_limit": _positive,
    "hourly_limit": _positive,
}
_ENGAGEMENT: dict[str, Parser] = {
    "open": _points,
    "click": _points,
    "reply": _points,
    "threshold": _positive,
}
