"""What an inbound message does, per the sequence's `stop_on` and `on_auto_reply`.

- reply: counts toward engagement; enrollments whose sequence stops on `reply` end as
  `replied`; an interested reply or a referral puts the prospect in the call queue at
  once; a "not interested" ends them whatever `stop_on` says; `company_reply` pauses
  the other prospects at the replying domain (never at a public mail provider).
- unsubscribe request and spam complaint: the address is suppressed and every enrollment
  ends as `unsubscribed`.
- hard bounce: the address is suppressed and every enrollment ends as `bounced`; a soft
  bounce is counted, and the third in a row (no open, click or reply between) ends them.
- auto-reply: `pause` holds the enrollment until the return date the text gives (or
  for the configured delay) and the scheduler resumes it in the window; `stop` ends it.

Every function here runs inside the caller's transaction and returns plain-words
descriptions of what it changed, kept with the message.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import claims, engagement, events
from outreach import enrollment as enrollments
from outreach import prospect as prospects
from outreach.inbound.classify import Classification
from outreach.inbound.matching import Match
from outreach.inbound.types import Intent, Kind
from outreach.models import (
    OPEN_STATES,
    Enrollment,
    EnrollmentState,
    Event,
    EventType,
    Prospect,
)
from outreach.schedule import due_at, next_opening
from outreach.sequence import Sequence
from outreach.suppression import suppress
from outreach.versions import VersionCache

SOFT_BOUNCES_TO_END = 3
MAX_PAUSE = timedelta(days=370)  # the longest an out-of-office answer holds an enrollment
MAX_TEXT = 4_000  # the most reply text kept in an event
# public mail providers: a reply from one of these says nothing about a company
FREE_MAIL = frozenset(
    [
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.es",
        "ymail.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "web.de",
        "t-online.de",
        "freenet.de",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "wanadoo.fr",
        "sfr.fr",
        "hotmail.fr",
        "hotmail.de",
        "hotmail.es",
        "telia.com",
        "telia.se",
        "spray.se",
        "bredband.net",
        "live.se",
        "hotmail.se",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "zoho.com",
        "mail.com",
        "yandex.ru",
        "mail.ru",
        "qq.com",
        "163.com",
        "fastmail.com",
        "hey.com",
        "tutanota.com",
    ]
)
_SIGNS_OF_LIFE = (EventType.OPENED, EventType.CLICKED, EventType.REPLIED)


class Effects:
    """Applies one classified, matched message; `done` lists what changed."""

    def __init__(self, session: Session, cache: VersionCache, now: datetime) -> None:
        self.session = session
        self.cache = cache
        self.now = now
        self.done: list[str] = []
        self._mine: list[Enrollment] = []
        self._colleagues: list[Enrollment] = []

    def apply(self, found: Classification, match: Match, inbound_id: int | None) -> list[str]:
        """Act on the message; returns the descriptions of what changed."""
        handler = {
            Kind.REPLY: self.reply,
            Kind.UNSUBSCRIBE: self.unsubscribe,
            Kind.COMPLAINT: self.complaint,
            Kind.BOUNCE: self.bounce,
            Kind.AUTO_REPLY: self.auto_reply,
        }.get(found.kind)
        if handler is not None:
            self._lock(match.prospect, company=found.kind == Kind.REPLY)
            handler(found, match, inbound_id)
        return self.done

    # --- helpers ---------------------------------------------------------

    def _lock(self, prospect: Prospect, company: bool) -> None:
        """Lock every enrollment this message may change, by id, before writing anything.

        Workers lock enrollments in id order too, so the two never wait on each other in
        a circle; a write before these locks (an event's foreign key) could.
        """
        assert prospect.id is not None
        mine = select(Enrollment.id).where(
            Enrollment.prospect_id == prospect.id,
            col(Enrollment.state).in_(OPEN_STATES),
        )
        ids = set(self.session.scalars(mine))
        domain = prospect.email.rpartition("@")[2]
        colleagues: set[int] = set()
        if company and domain and domain not in FREE_MAIL and self._company_reply_wanted(ids):
            colleagues = set(
                self.session.scalars(
                    select(Enrollment.id)
                    .join(Prospect, col(Prospect.id) == col(Enrollment.prospect_id))
                    .where(
                        col(Prospect.email).endswith(f"@{domain}"),
                        col(Prospect.id) != prospect.id,
                        Enrollment.state == EnrollmentState.ACTIVE,
                    )
                )
            )
        if not ids and not colleagues:
            return
        # populate_existing: a row a worker changed while we waited is read as it is now
        locked = self.session.scalars(
            select(Enrollment)
            .where(col(Enrollment.id).in_(ids | colleagues))
            .order_by(col(Enrollment.id))
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        self._mine = [e for e in locked if e.id in ids and e.state in OPEN_STATES]
        self._colleagues = [
            e for e in locked if e.id in colleagues and e.state == EnrollmentState.ACTIVE
        ]

    def _company_reply_wanted(self, ids: set[int]) -> bool:
        enrollments_ = self.session.scalars(select(Enrollment).where(col(Enrollment.id).in_(ids)))
        return any("company_reply" in self._sequence(e).stop_on for e in enrollments_)

    def _sequence(self, enrollment: Enrollment) -> Sequence:
        return self.cache.load(self.session, enrollment.version_id)

    def _end(self, enrollment: Enrollment, state: EnrollmentState, reason: str) -> None:
        enrollment.state = state
        enrollment.next_run_at = None
        enrollment.resume_at = None
        enrollment.reason = reason
        enrollment.updated_at = self.now
        assert enrollment.id is not None
        claims.release(self.session, enrollment.id)
        self.done.append(f"{enrollment.sequence_id}: {state} ({reason})")

    def _event(self, type_: EventType, match: Match, **data: object) -> Event:
        assert match.prospect.id is not None
        return events.record(
            self.session,
            type_,
            self.now,
            prospect_id=match.prospect.id,
            enrollment=match.enrollment,
            step=match.step,
            **data,
        )

    def _other(self, match: Match) -> dict[str, object]:
        """Event data naming who wrote, when it was not the prospect."""
        return {} if match.is_the_prospect else {"from": match.speaker}

    # --- kinds -------------------------------------------------------------

    def reply(self, found: Classification, match: Match, inbound_id: int | None) -> None:
        intent = found.intent or Intent.NEUTRAL
        text = (found.text or "")[:MAX_TEXT]
        self._event(
            EventType.REPLIED,
            match,
            intent=str(intent),
            text=text,
            inbound=inbound_id,
            **self._other(match),
        )
        self.done.append(f"reply ({intent}) recorded")
        company = False
        for enrollment in self._mine:
            sequence = self._sequence(enrollment)
            if intent == Intent.NOT_INTERESTED:
                self._end(enrollment, EnrollmentState.REPLIED, "replied: not interested")
            elif "reply" in sequence.stop_on:
                self._end(enrollment, EnrollmentState.REPLIED, f"replied ({intent})")
            company = company or "company_reply" in sequence.stop_on
        if company:
            self._pause_colleagues(match.prospect)
        # an interested reply or a referral goes to the queue under its own reason
        if intent in (Intent.INTERESTED, Intent.REFERRAL):
            who = "" if match.is_the_prospect else f" (from {match.speaker})"
            note = f"{intent} reply{who}: {text[:200]}"
            flagged = engagement.flag(
                self.session, match.prospect, match.enrollment, str(intent), self.now, note
            )
            if flagged is not None:
                self.done.append(f"flagged for a call: {intent} reply")
        if intent == Intent.NOT_INTERESTED:
            return  # an answer, but not engagement: no points, no call
        task = engagement.score(
            self.session, self.cache, match.prospect, match.enrollment, "reply", self.now
        )
        if task is not None:
            self.done.append(f"flagged for a call: {task.note}")

    def _pause_colleagues(self, prospect: Prospect) -> None:
        """Pause the other prospects at the domain, in the sequences that ask for it."""
        for enrollment in self._colleagues:
            if "company_reply" not in self._sequence(enrollment).stop_on:
                continue
            enrollments.pause(
                self.session, enrollment, f"company reply from {prospect.email}", self.now
            )
            assert enrollment.id is not None
            claims.release(self.session, enrollment.id)
            domain = prospect.email.rpartition("@")[2]
            self.done.append(f"{enrollment.sequence_id}: paused a colleague at {domain}")

    def unsubscribe(self, found: Classification, match: Match, inbound_id: int | None) -> None:
        if found.unsubscribe_token or match.is_the_prospect:
            how = "mailto link" if found.unsubscribe_token else "reply asked to be removed"
            self._suppress(match, f"unsubscribed: {how}", EventType.UNSUBSCRIBED, inbound_id)
            return
        # someone the mail was forwarded to asked to be removed: them, not the prospect
        assert match.speaker is not None
        other = prospects.ensure(self.session, match.speaker, self.now)
        suppress(self.session, other, "unsubscribed: reply asked to be removed", self.now)
        self._event(
            EventType.REPLIED,
            match,
            intent="unsubscribe",
            text=found.text or "",
            inbound=inbound_id,
            **self._other(match),
        )
        self.done.append(f"{match.speaker} suppressed (asked to be removed from a forward)")

    def complaint(self, found: Classification, match: Match, inbound_id: int | None) -> None:
        kind = found.complaint.feedback_type if found.complaint else "abuse"
        self._suppress(match, f"spam complaint ({kind})", EventType.COMPLAINED, inbound_id)

    def _suppress(
        self, match: Match, reason: str, event: EventType, inbound_id: int | None
    ) -> None:
        ended = suppress(
            self.session,
            match.prospect,
            reason,
            self.now,
            EnrollmentState.UNSUBSCRIBED,
            event,
            enrollment=match.enrollment,
            step=match.step,
            inbound=inbound_id,
        )
        self.done.append(f"{match.prospect.email} suppressed ({reason}); {ended} ended")

    def bounce(self, found: Classification, match: Match, inbound_id: int | None) -> None:
        report = found.bounce
        assert report is not None
        line = match.recipient
        hard = line.hard if line else report.hard
        status = (line.status if line else None) or report.status
        reason = line.reason if line else report.reason
        detail: dict[str, object] = {"hard": hard, "status": status, "bounce_reason": reason}
        if not match.is_the_prospect:
            # the report is about another address (a forward of the prospect's mail)
            self._event(
                EventType.BOUNCED,
                match,
                inbound=inbound_id,
                address=match.speaker,
                **{**detail, "hard": False},
            )
            self.done.append(f"bounce for {match.speaker}, not {match.prospect.email}: recorded")
            return
        if hard:
            why = " ".join(p for p in ("hard bounce", status, reason) if p)
            ended = suppress(
                self.session,
                match.prospect,
                why,
                self.now,
                EnrollmentState.BOUNCED,
                EventType.BOUNCED,
                enrollment=match.enrollment,
                step=match.step,
                inbound=inbound_id,
                **detail,
            )
            self.done.append(f"{match.prospect.email} suppressed ({why}); {ended} ended")
            return
        self._event(EventType.BOUNCED, match, inbound=inbound_id, **detail)
        count = self._soft_bounces_in_a_row(match.prospect)
        self.done.append(f"soft bounce: {count} message(s) in a row")
        if count >= SOFT_BOUNCES_TO_END:
            for enrollment in self._mine:
                self._end(enrollment, EnrollmentState.BOUNCED, f"{count} soft bounces in a row")

    def _soft_bounces_in_a_row(self, prospect: Prospect) -> int:
        """Messages soft-bounced since the prospect last showed life (open, click, reply).

        Several reports about one message (a "delayed" notice, then the failure) count once.
        """
        recent = self.session.scalars(
            select(Event)
            .where(
                Event.prospect_id == prospect.id,
                col(Event.type).in_([EventType.BOUNCED, *_SIGNS_OF_LIFE]),
            )
            .order_by(col(Event.at).desc(), col(Event.id).desc())
            .limit(50)
        )
        messages: set[tuple[int | None, int | None]] = set()
        for event in recent:
            if event.type != EventType.BOUNCED or event.data.get("hard"):
                break
            if "address" not in event.data:
                messages.add((event.enrollment_id, event.step))
        return len(messages)

    def auto_reply(self, found: Classification, match: Match, inbound_id: int | None) -> None:
        back = found.return_date
        self._event(
            EventType.AUTO_REPLY,
            match,
            return_date=back.isoformat() if back else None,
            inbound=inbound_id,
            **self._other(match),
        )
        if not match.is_the_prospect:
            self.done.append(f"auto-reply from {match.speaker}: recorded, nothing paused")
            return
        for enrollment in self._mine:
            sequence = self._sequence(enrollment)
            policy = sequence.on_auto_reply
            if "auto_reply" in sequence.stop_on or policy.action == "stop":
                self._end(enrollment, EnrollmentState.STOPPED, "auto-reply")
            elif policy.action == "pause":
                self._hold(enrollment, sequence, match.prospect, back)

    def _hold(
        self, enrollment: Enrollment, sequence: Sequence, prospect: Prospect, back: date | None
    ) -> None:
        if enrollment.state == EnrollmentState.PAUSED and enrollment.resume_at is None:
            return  # paused by a person or for a reason a return date doesn't settle
        tz = sequence.schedule.zone(prospect.timezone)
        resume = self._resume_time(sequence, tz, back)
        why = f"out of office until {back.isoformat()}" if back else "out of office"
        enrollment.state = EnrollmentState.PAUSED
        enrollment.resume_at = resume
        enrollment.reason = why
        enrollment.updated_at = self.now
        assert enrollment.id is not None
        claims.release(self.session, enrollment.id)
        events.for_enrollment(
            self.session,
            enrollment,
            EventType.PAUSED,
            self.now,
            reason=why,
            until=resume.isoformat(),
        )
        self.done.append(f"{enrollment.sequence_id}: paused until {resume.isoformat()}")

    def _resume_time(self, sequence: Sequence, tz: ZoneInfo, back: date | None) -> datetime:
        """The window's first opening on the return day (or after the delay), within a year."""
        latest = self.now + MAX_PAUSE
        if back is not None:
            try:
                resume = datetime.combine(back, time(0, 0), tzinfo=tz)
            except (OverflowError, ValueError):
                resume = latest
        else:
            delay = sequence.on_auto_reply.delay
            resume = due_at(self.now, [delay] if delay else [], sequence.schedule, tz)
        return next_opening(min(max(resume, self.now), latest), sequence.schedule, tz)


def wake(
    session: Session, sequence: Sequence, enrollment: Enrollment, prospect: Prospect, now: datetime
) -> None:
    """Resume an out-of-office pause: due at the later of its planned time and the return."""
    assert enrollment.resume_at is not None
    tz: ZoneInfo = sequence.schedule.zone(prospect.timezone)
    planned = enrollment.next_run_at or now
    enrollment.next_run_at = next_opening(
        max(planned, enrollment.resume_at, now), sequence.schedule, tz
    )
    enrollment.state = EnrollmentState.ACTIVE
    enrollment.resume_at = None
    enrollment.reason = None
    enrollment.updated_at = now
    events.for_enrollment(session, enrollment, EventType.RESUMED, now, reason="back from leave")


def wake_due(session: Session, cache: VersionCache, now: datetime, limit: int = 500) -> int:
    """Resume the out-of-office pauses whose return has come; returns how many."""
    due = session.scalars(
        select(Enrollment)
        .where(
            Enrollment.state == EnrollmentState.PAUSED,
            col(Enrollment.resume_at).is_not(None),
            col(Enrollment.resume_at) <= now,
        )
        .order_by(col(Enrollment.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for enrollment in due:
        prospect = session.get(Prospect, enrollment.prospect_id)
        assert prospect is not None
        wake(session, cache.load(session, enrollment.version_id), enrollment, prospect, now)
    return len(due)


__all__ = ["OPEN_STATES", "Effects", "wake", "wake_due"]
