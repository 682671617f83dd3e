"""Where inbound messages come from: .eml files, mbox files, Maildir folders, stdin."""

from __future__ import annotations

import mailbox
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_MBOX_SEPARATOR = re.compile(rb"(?:\r?\n){2}From \S+", re.M)


@dataclass
class Unreadable:
    """A path that could not be read, with the reason."""

    source: str
    reason: str


def is_mbox(path: Path, head: bytes) -> bool:
    """An mbox file: named so, or "From " lines separating more than one message."""
    if path.suffix.lower() == ".mbox":
        return True
    return head.startswith(b"From ") and _MBOX_SEPARATOR.search(head) is not None


def is_maildir(path: Path) -> bool:
    """A Maildir folder: it has cur and new."""
    return (path / "cur").is_dir() and (path / "new").is_dir()


def read(paths: list[str]) -> Iterator[tuple[str, bytes] | Unreadable]:
    """(source name, raw bytes) for every message under the given paths; "-" is stdin."""
    for name in paths or ["-"]:
        if name == "-":
            yield "stdin", sys.stdin.buffer.read()
            continue
        path = Path(name)
        try:
            yield from _path(path)
        except OSError as exc:
            yield Unreadable(name, exc.strerror or str(exc))


def _path(path: Path) -> Iterator[tuple[str, bytes] | Unreadable]:
    if path.is_dir():
        if is_maildir(path):
            yield from _maildir(path)
        else:
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in (".eml", ".mbox", ".msg"):
                    yield from _path(child)
        return
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    if is_mbox(path, head):
        yield from _mbox(path)
    else:
        yield str(path), path.read_bytes()


def _mbox(path: Path) -> Iterator[tuple[str, bytes]]:
    box = mailbox.mbox(path, create=False)
    try:
        for index, key in enumerate(box.iterkeys(), 1):
            yield f"{path}#{index}", box.get_bytes(key)
    finally:
        box.close()


def _maildir(path: Path) -> Iterator[tuple[str, bytes]]:
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.iterkeys()):
        yield f"{path}/{key}", box.get_bytes(key)
