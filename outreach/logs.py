"""Structured log lines: ids bound to a block of work appear on every record logged in it.

`bind(enrollment=7, step=1)` holds fields for the current thread (or task) until the block
ends; `ContextFilter` copies them onto each record as `record.ctx`; the formatters write one
line per record, logfmt (`key=value`) by default or JSON with OUTREACH_LOG_FORMAT=json.
`configure` installs both on the root handlers, so lines from Dramatiq itself about a
message (a failure, a retry) carry the message's ids as well.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from outreach.errors import InputError

Fields = Mapping[str, Any]
_fields: ContextVar[Fields] = ContextVar("outreach_log_fields", default=MappingProxyType({}))


def current() -> dict[str, Any]:
    """The fields bound here and now."""
    return dict(_fields.get())


def push(**fields: Any) -> Token[Fields]:
    """Add fields until `pop(token)`; a field given as None is removed. Prefer `bind`."""
    merged = {**_fields.get(), **fields}
    return _fields.set({key: value for key, value in merged.items() if value is not None})


def pop(token: Token[Fields]) -> None:
    """Restore the fields as they were before the `push` that returned `token`."""
    _fields.reset(token)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields to every record logged in this block; None removes an outer field."""
    token = push(**fields)
    try:
        yield
    finally:
        pop(token)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record as `record.ctx` (after any given in `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        given = getattr(record, "ctx", None)
        record.ctx = {**_fields.get(), **given} if isinstance(given, Mapping) else current()
        return True


def _pairs(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, Any]:
    """Time, level, logger and message, then the record's fields, then any traceback."""
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    pairs: dict[str, Any] = {
        "time": stamp.replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    ctx = getattr(record, "ctx", None)
    for key, value in (ctx if isinstance(ctx, Mapping) else current()).items():
        pairs.setdefault(key, value)
    if record.exc_info:
        pairs["exc"] = formatter.formatException(record.exc_info)
    elif record.exc_text:
        pairs["exc"] = record.exc_text
    if record.stack_info:
        pairs["stack"] = formatter.formatStack(record.stack_info)
    return pairs


def _logfmt(value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        value = ",".join(str(item) for item in value)
    text = str(value)
    if text and not any(c.isspace() or c in '"=\\' or not c.isprintable() for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """One line per record: `time=… level=info logger=… msg="…" enrollment=7 send=12`."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt(value)}" for key, value in _pairs(self, record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the same keys as the logfmt lines."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_pairs(self, record), ensure_ascii=False, default=str)


FORMATTERS: dict[str, type[logging.Formatter]] = {
    "logfmt": LogfmtFormatter,
    "json": JsonFormatter,
}


def configure(level: int | str = logging.INFO, fmt: str | None = None) -> None:
    """Structured lines on every root handler (a stderr one if there is none).

    `fmt` is "logfmt" or "json", by default OUTREACH_LOG_FORMAT, else logfmt. `level` is
    set on the "outreach" loggers; the root level (Dramatiq's CLI sets it) is left alone.
    """
    name = (fmt or os.environ.get("OUTREACH_LOG_FORMAT") or "logfmt").strip().lower()
    if name not in FORMATTERS:
        raise InputError(f"OUTREACH_LOG_FORMAT: unknown format {name!r}; use logfmt or json")
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(FORMATTERS[name]())
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
    logging.getLogger("outreach").setLevel(level)
