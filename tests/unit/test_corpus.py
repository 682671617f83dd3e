"""The bounce corpus: every file classifies, and the answers agree with expected.json.

The corpus is kept in `tests/corpora/bounces` (from the public sisimai set-of-emails test
set, BSD-2-Clause; see its README), or wherever OUTREACH_CORPUS_DIR points. Without it
these tests skip, except under CI=true.
Run with `-s` to see the agreement figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outreach.inbound.classify import Classification, classify_bytes
from tests.conftest import require

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KIND_TARGET = 0.98
HARD_TARGET = 0.95
REPORTS = ("bounce", "complaint")


def corpus_dir() -> Path:
    """OUTREACH_CORPUS_DIR, else the copy kept in the repository."""
    override = os.environ.get("OUTREACH_CORPUS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "corpora" / "bounces"


CORPUS = corpus_dir()
FILES = sorted(p.name for p in CORPUS.glob("*.eml")) if CORPUS.is_dir() else []


def expected_answers() -> dict[str, dict[str, Any]]:
    """expected.json, or a skip (a failure under CI=true) when the corpus is missing."""
    answers: dict[str, dict[str, Any]] = {}

    def load() -> None:
        answers.update(json.loads((CORPUS / "expected.json").read_text()))
        if not FILES:
            raise FileNotFoundError(f"no .eml files in {CORPUS}")

    require(f"the bounce corpus at {CORPUS}", load)
    return answers


def classify_file(name: str) -> Classification:
    return classify_bytes((CORPUS / name).read_bytes(), NOW)


@dataclass
class Tally:
    """Agreement counts over the corpus."""

    kinds: int = 0
    kind_ok: int = 0
    bounces: int = 0
    hard_ok: int = 0
    recipients: int = 0
    reason_ok: int = 0
    address_ok: int = 0
    disagreements: list[str] = field(default_factory=list)

    def ratio(self, ok: int, total: int) -> float:
        return ok / total if total else 1.0

    def summary(self) -> str:
        return (
            f"kind {self.kind_ok}/{self.kinds} = {self.ratio(self.kind_ok, self.kinds):.3f}; "
            f"hard/soft {self.hard_ok}/{self.bounces} = "
            f"{self.ratio(self.hard_ok, self.bounces):.3f}; "
            f"reason {self.reason_ok}/{self.recipients} = "
            f"{self.ratio(self.reason_ok, self.recipients):.3f}; "
            f"address {self.address_ok}/{self.recipients} = "
            f"{self.ratio(self.address_ok, self.recipients):.3f}"
        )


def kind_agrees(expected: str, found: str) -> bool:
    """not_bounce accepts any kind but bounce or complaint; other kinds must be equal."""
    return found not in REPORTS if expected == "not_bounce" else found == expected


def compare(tally: Tally, name: str, expected: dict[str, Any], found: Classification) -> None:
    """Count one file into the tally, noting every disagreement."""
    notes: list[str] = []
    tally.kinds += 1
    if kind_agrees(expected["kind"], str(found.kind)):
        tally.kind_ok += 1
    else:
        notes.append(f"kind {found.kind} (expected {expected['kind']})")
    if expected["kind"] == "bounce":
        wanted = expected["bounce"]
        tally.bounces += 1
        if found.bounce is not None and found.bounce.hard == wanted["hard"]:
            tally.hard_ok += 1
        else:
            notes.append(f"hard {found.bounce.hard if found.bounce else None} ({wanted['hard']})")
        got = found.bounce.recipients if found.bounce else []
        for index, recipient in enumerate(wanted["recipients"]):
            tally.recipients += 1
            address = (recipient["address"] or "").lower()
            match = next((r for r in got if (r.address or "") == address), None)
            if match is None and index < len(got):
                match = got[index]
            if match is not None and match.reason == recipient["reason"]:
                tally.reason_ok += 1
            else:
                notes.append(f"reason {match.reason if match else None} ({recipient['reason']})")
            if match is not None and (match.address or "") == address:
                tally.address_ok += 1
            else:
                notes.append(f"address {match.address if match else None} ({address or None})")
    if notes:
        tally.disagreements.append(f"{name}: " + "; ".join(notes))


def test_corpus_agrees_with_expected_answers() -> None:
    answers = expected_answers()
    tally = Tally()
    for name, expected in sorted(answers.items()):
        compare(tally, name, expected, classify_file(name))
    auto_replies = sum(1 for a in answers.values() if a["kind"] == "auto_reply")
    report = (
        f"{tally.summary()} ({len(answers)} files, {auto_replies} expected auto-replies)\n"
        + "\n".join(tally.disagreements)
    )
    print(f"\ncorpus agreement: {report}")
    kind = tally.ratio(tally.kind_ok, tally.kinds)
    hard = tally.ratio(tally.hard_ok, tally.bounces)
    assert kind >= KIND_TARGET, f"kind agreement {kind:.3f} < {KIND_TARGET}: {report}"
    assert hard >= HARD_TARGET, f"hard/soft agreement {hard:.3f} < {HARD_TARGET}: {report}"


@pytest.mark.parametrize("name", FILES or ["(corpus missing)"])
def test_each_file_classifies_to_json(name: str) -> None:
    expected_answers()
    found = classify_file(name)
    encoded = json.dumps(found.to_json())
    assert json.loads(encoded)["kind"] == str(found.kind)
    if found.bounce is not None:
        assert found.bounce.recipients, name
        for recipient in found.bounce.recipients:
            assert recipient.hard == (
                recipient.reason in ("userunknown", "hostunknown", "hasmoved", "notaccept")
            )
