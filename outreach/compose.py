"""Composing the email of a step: variant, render context, threading and headers."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote

from outreach import tokens, tracking
from outreach.app import App
from outreach.message import OutgoingEmail, make_message_id, sender_domain
from outreach.models import Prospect, Send
from outreach.prospect import display_name
from outreach.sequence import Sequence, Step
from outreach.template import RenderError

PROSPECT_FIELDS = ("email", "first_name", "last_name", "company", "title", "phone", "timezone")


def prospect_context(prospect: Prospect) -> dict[str, Any]:
    """The prospect as templates see it: empty values are absent, so they count as missing."""
    values: dict[str, Any] = {
        k: v for k, v in (prospect.fields or {}).items() if v not in (None, "")
    }
    values.update({k: getattr(prospect, k) for k in PROSPECT_FIELDS if getattr(prospect, k)})
    full = display_name(prospect)
    if full:
        values["full_name"] = full
    return values


@functools.lru_cache(maxsize=1024)
def _sender_parts(sender: str) -> tuple[str, str]:
    return parseaddr(sender)


def sender_context(sender: str) -> dict[str, str]:
    """`sender.name` and `sender.email` from an address as written in the sequence."""
    name, email = _sender_parts(sender)
    return {"name": name or email, "email": email}


def unsubscribe_token(secret: str, enrollment_id: int, step: int) -> str:
    """A signed token naming the enrollment and step an unsubscribe came from."""
    return tokens.sign(f"u:{enrollment_id}:{step}", secret)


def context(
    prospect: Prospect, sequence: Sequence, sender: str, step: int, unsubscribe_url: str
) -> dict[str, Any]:
    """Every variable a template may use."""
    return {
        "prospect": prospect_context(prospect),
        "sender": sender_context(sender),
        "sequence": {"id": sequence.id, "name": sequence.name},
        "step": {"number": step},
        "unsubscribe_url": unsubscribe_url,
    }


@dataclass(frozen=True)
class Composed:
    """A rendered step, ready to reserve in the ledger and send."""

    email: OutgoingEmail
    template: str
    sender_email: str


def compose(
    app: App,
    *,
    sequence: Sequence,
    step: Step,
    template: str,
    prospect: Prospect,
    sender: str,
    enrollment_id: int,
    earlier: list[Send],
    now: datetime,
) -> Composed:
    """Render one email step for one prospect; raises MissingVariable when data is missing."""
    token = unsubscribe_token(app.secret, enrollment_id, step.number)
    unsubscribe_url = f"{app.settings.base_url.rstrip('/')}/u/{token}"
    variables = context(prospect, sequence, sender, step.number, unsubscribe_url)
    rendered = app.renderer.render(sequence.templates[template], variables)
    html = rendered.html
    if sequence.tracking and html is not None:
        html = tracking.track_html(
            html,
            base_url=app.settings.base_url,
            secret=app.secret,
            enrollment_id=enrollment_id,
            step=step.number,
            unsubscribe_url=unsubscribe_url,
        )
    sender_email = _sender_parts(sender)[1]
    domain = sender_domain(sender)
    subject, in_reply_to, references = _threading(step, rendered.subject, earlier)
    email = OutgoingEmail(
        message_id=make_message_id(f"{enrollment_id}.{step.number}.{token[-8:]}", domain),
        sender=sender,
        to_email=prospect.email,
        to_name=display_name(prospect),
        reply_to=sequence.sender.reply_to,
        subject=subject,
        text=rendered.text,
        html=html,
        date=now,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=f"mailto:{sender_email}?subject={quote('unsubscribe ' + token)}",
        postal_address=sequence.sender.address,
        in_reply_to=in_reply_to,
        references=references,
        headers=(("X-Outreach-Enrollment", f"{enrollment_id}.{step.number}"),),
    )
    return Composed(email=email, template=template, sender_email=sender_email)


def _threading(
    step: Step, subject: str | None, earlier: list[Send]
) -> tuple[str, str | None, tuple[str, ...]]:
    if not step.thread or not earlier:
        return subject or "", None, ()
    first = earlier[0].subject
    threaded = first if first.lower().startswith("re:") else f"Re: {first}"
    return threaded, earlier[-1].message_id, tuple(s.message_id for s in earlier)


def render_note(
    app: App, sequence: Sequence, step: Step, prospect: Prospect, sender: str
) -> str | None:
    """A call or task step's note for this prospect; as written when it cannot render."""
    if not step.note:
        return None
    try:
        return app.renderer.render_string(
            step.note, context(prospect, sequence, sender, step.number, "")
        )
    except RenderError:
        # a task is for a person, who can read the note as written
        return step.note
