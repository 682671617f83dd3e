"""Sequence versions: each enrollment runs on the snapshot it was enrolled in."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import select

from outreach.models import SequenceVersion
from outreach.sequence import Sequence


def store(session: Session, sequence: Sequence, now: datetime) -> SequenceVersion:
    """The stored version with this content, saved first if it is new."""
    query = select(SequenceVersion).where(
        SequenceVersion.sequence_id == sequence.id,
        SequenceVersion.content_hash == sequence.content_hash,
    )
    version = session.scalar(query)
    if version is not None:
        return version
    version = SequenceVersion(
        sequence_id=sequence.id,
        content_hash=sequence.content_hash,
        snapshot=sequence.model_dump(mode="json"),
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(version)
    except sa.exc.IntegrityError:
        # another enrollment stored the same version at the same moment
        stored = session.scalar(query)
        assert stored is not None
        return stored
    return version


class VersionCache:
    """Parsed versions by id for one database; versions never change once stored."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._parsed: dict[int, Sequence] = {}

    def load(self, session: Session, version_id: int) -> Sequence:
        """The parsed sequence of a stored version."""
        cached = self._parsed.get(version_id)
        if cached is not None:
            return cached
        version = session.get(SequenceVersion, version_id)
        if version is None:
            raise LookupError(f"no sequence version {version_id}")
        sequence = Sequence.model_validate(version.snapshot)
        if len(self._parsed) >= self._size:
            self._parsed.clear()
        self._parsed[version_id] = sequence
        return sequence
