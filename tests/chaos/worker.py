"""The module chaos workers hand to Dramatiq's CLI: `outreach worker`'s, plus a poison.

With OUTREACH_CHAOS_POISON set to enrollment ids, a worker that starts preparing one of
those enrollments' steps SIGKILLs its own process, every time, before anything is reserved:
the message that no retry count of Dramatiq's ever sees fail.
"""

from __future__ import annotations

import os
import signal

from outreach import fastpath
from outreach.worker_entry import broker

POISON = {int(i) for i in os.environ.get("OUTREACH_CHAOS_POISON", "").split(",") if i}
_prepare_many = fastpath.prepare_many


def _poisoned_prepare_many(app, session, claims, now):  # type: ignore[no-untyped-def]
    if any(enrollment_id in POISON for enrollment_id, _step in claims):
        os.kill(os.getpid(), signal.SIGKILL)
    return _prepare_many(app, session, claims, now)


if POISON:
    fastpath.prepare_many = _poisoned_prepare_many  # type: ignore[assignment]

__all__ = ["broker"]
