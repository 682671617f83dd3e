"""Open and click tracking: signed links in the HTML part, and what a hit on them records.

Design
------
*Links carry their own truth.* When a sequence has `tracking: true`, `track_html` (called by
`compose` on the HTML part only) turns every `http(s)` link of an `<a>`, `<area>` or VML
element, except the unsubscribe link, into `{base_url}/t/c/<token>`, and adds an open pixel
`{base_url}/t/o/<token>` before `</body>`. The click token signs the destination itself
with the enrollment and step (payload `c:{enrollment_id}:{step}:{url}`, HMAC-SHA256 with the
secret key, see `outreach.tokens`); the open token signs `o:{enrollment_id}:{step}`. So
"the redirect goes only to the link recorded when the email was rendered" holds with no
database write in the send path and no read in the redirect: a forged or altered token
fails the HMAC and gets 404, and nothing is recorded. A signed destination is still checked
when it is used (only `http`/`https` URLs with a host, no whitespace, control characters or
backslashes), so not even a template can turn the tracker into a `javascript:` or
scheme-relative (`//evil.example`) redirect. Tokens are URL-safe (base64url + `.`). They
stay valid as long as the secret key does; rotating the key breaks old emails' links.

*Machines.* A hit is a machine's, and recorded with `data.machine` saying why, when:
- `apple_mpp`: Apple Mail Privacy Protection fetched the pixel (User-Agent exactly
  `Mozilla/5.0`, or an address in Apple's 17.0.0.0/8);
- `bot`: the User-Agent is a known crawler, link preview, security gateway or HTTP library
  (Proofpoint, Mimecast, Barracuda, SafeLinks, curl, python-requests, HeadlessChrome...);
  for clicks also Microsoft Office's link pre-check (`Microsoft Office`, `ms-office`: the
  browser's own request follows it). Gmail's `GoogleImageProxy` and Yahoo's proxy only fetch
  when the person opens the email, so they count as people;
- `no_user_agent`: no User-Agent at all;
- `scanner`: a click less than `OUTREACH_SCANNER_SECONDS` (60) after the email went out
  (`sent_at` in the ledger), which is how inbound link scanners behave.
Machine hits earn no engagement and are left out of `outreach stats`. The address of a hit
is used to recognise Apple's proxy and is not stored; the User-Agent (cut to 200
characters) and a click's URL are.

*Points once per email.* The first human open of an (enrollment, step) earns the open
points and the first human click earns the click points; later opens and clicks of the
same email are recorded (timeline, counts) but earn nothing, so a prospect who reopens an
email ten times is not flagged for a call on that alone. Reaching the threshold flags the
prospect once (`engagement.score`).

*Batching.* The HTTP routes verify the token, classify the hit by User-Agent and address,
and hand it to a `Recorder`, then answer at once: they never wait for the database. The
recorder's thread writes what is queued every 100 ms (sooner once 500 hits wait), in one
transaction per batch; a batch that fails is retried hit by hit, so one bad row does not
lose the others, and while the database cannot be reached the hits stay queued and are
tried again every round. The trade-off: hits still queued when the process dies (at most
the last fraction of a second, or longer while the database is unreachable) are lost; `flush()` runs
at shutdown (the web app's lifespan and `atexit`), and at most `max_pending` hits wait in
memory (later ones are counted in `dropped`). The timing check for link scanners happens
at write time, against each hit's own request time, so batching does not change it. A
recorder remembers what stays true (whose each enrollment is, when each email went out,
which emails have earned their points: `Memory`), so a repeat open costs one row in one
multi-row INSERT. Hits crediting an enrollment that does not exist (an `outreach preview`
rendering, a deleted database) are not recorded, but their links still redirect.
"""

from __future__ import annotations

import atexit
import contextlib
import html as html_lib
import json
import logging
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col, select

from outreach import engagement, tokens
from outreach.db import transaction
from outreach.models import Enrollment, Event, EventType, Prospect, Send

if TYPE_CHECKING:
    from outreach.app import App

log = logging.getLogger(__name__)

Kind = Literal["open", "click"]

# a 1x1 transparent GIF
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
MAX_URL = 4096
MAX_USER_AGENT = 200
MEMORY_LIMIT = 200_000  # facts of each kind a recorder keeps (see Memory)

# --- tokens and destinations ---------------------------------------------------------


def open_token(secret: str, enrollment_id: int, step: int) -> str:
    """The token of an open pixel."""
    return tokens.sign(f"o:{enrollment_id}:{step}", secret)


def click_token(secret: str, enrollment_id: int, step: int, url: str) -> str:
    """The token of a tracked link: the destination is signed with the enrollment and step."""
    return tokens.sign(f"c:{enrollment_id}:{step}:{url}", secret)


_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f\\]")


def safe_destination(url: str) -> bool:
    """An absolute http(s) URL with a host: the only kind of place a click may lead."""
    if len(url) > MAX_URL or _UNSAFE_URL.search(url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(host)


_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


def location(url: str) -> str:
    """A checked destination as a `Location` header value: ASCII, the host in IDNA."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, colon, port = hostport.partition(":")  # a non-ASCII host is never an IPv6 literal
    if not host.isascii():
        with contextlib.suppress(UnicodeError):  # else left to percent-encoding below
            host = host.encode("idna").decode("ascii")
    parts = parts._replace(netloc=f"{userinfo}{at}{host}{colon}{port}")
    return quote(urlunsplit(parts), safe=_URL_SAFE)


def _ids(text: str) -> tuple[int, int] | None:
    enrollment, _, step = text.partition(":")
    if not (enrollment.isascii() and enrollment.isdigit() and step.isascii() and step.isdigit()):
        return None
    return int(enrollment), int(step)


def parse_open(token: str, secret: str) -> tuple[int, int] | None:
    """(enrollment_id, step) of a genuine open token, else None."""
    payload = tokens.verify(token, secret)
    if payload is None or not payload.startswith("o:"):
        return None
    return _ids(payload[2:])


def parse_click(token: str, secret: str) -> tuple[int, int, str] | None:
    """(enrollment_id, step, url) of a genuine click token to a safe destination, else None."""
    payload = tokens.verify(token, secret)
    if payload is None or not payload.startswith("c:"):
        return None
    enrollment, _, rest = payload[2:].partition(":")
    step, _, url = rest.partition(":")
    ids = _ids(f"{enrollment}:{step}")
    if ids is None or not safe_destination(url):
        return None
    return ids[0], ids[1], url


# --- rewriting the HTML part ------------------------------------------------------------

# an <a>, <area> or VML (Outlook button) start tag; quoted values may hold ">"
_LINK_TAG = re.compile(r"""<(?:a|area|v:\w+)\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
_HREF = re.compile(
    r"""(?<![\w:-])(href\s*=\s*)(?:"(\s*https?://[^"]*)"|'(\s*https?://[^']*)')""",
    re.IGNORECASE,
)
_BODY_END = "</body>"


def track_html(
    html: str,
    *,
    base_url: str,
    secret: str,
    enrollment_id: int,
    step: int,
    unsubscribe_url: str,
) -> str:
    """The HTML part with tracked links and an open pixel (see the module's docstring)."""
    base = base_url.rstrip("/")
    # the unsubscribe link, and any other link to this service, is left as it is
    own = tuple(p for p in (unsubscribe_url, f"{base}/u/", f"{base}/t/") if p)
    tracked: dict[str, str] = {}

    def href(match: re.Match[str]) -> str:
        quote = '"' if match.group(2) is not None else "'"
        url = html_lib.unescape(match.group(2) or match.group(3) or "").strip()
        if url.startswith(own) or not safe_destination(url):
            return match.group(0)
        link = tracked.get(url)
        if link is None:
            token = click_token(secret, enrollment_id, step, url)
            link = tracked[url] = html_lib.escape(f"{base}/t/c/{token}", quote=True)
        return f"{match.group(1)}{quote}{link}{quote}"

    def tag(match: re.Match[str]) -> str:
        return _HREF.sub(href, match.group(0))

    html = _LINK_TAG.sub(tag, html)
    src = html_lib.escape(f"{base}/t/o/{open_token(secret, enrollment_id, step)}", quote=True)
    pixel = f'<img src="{src}" width="1" height="1" alt="">'
    at = html.lower().rfind(_BODY_END)
    return html + pixel if at < 0 else html[:at] + pixel + html[at:]


# --- machines -------------------------------------------------------------------------

_BOT_UA = re.compile(
    r"(?<!cu)bot\b|crawl|spider|slurp|preview|scanner|\bscan\b|monitor|validator|"
    r"proofpoint|mimecast|barracuda|messagelabs|symantec|broadcom|trend ?micro|sophos|"
    r"forcepoint|fireeye|trellix|ironport|cisco|cloudmark|zscaler|safe ?links|defender|"
    r"python|curl/|wget|go-http-client|java/|okhttp|libwww|httpclient|http-client|"
    r"axios|node-fetch|undici|aiohttp|guzzle|headless|phantomjs|puppeteer|playwright|"
    r"facebookexternalhit|whatsapp|slack|embedly|iframely|linkexpand",
    re.IGNORECASE,
)
# Office apps check a link before the browser opens it; the browser's request follows
_LINK_CHECK_UA = re.compile(r"microsoft office|ms-office|existence discovery", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _agent_reason(user_agent: str, kind: Kind) -> str | None:
    agent = user_agent.strip()
    if not agent:
        return "no_user_agent"
    if agent == "Mozilla/5.0":
        # what Apple's proxy sends; no browser a person clicks in is that bare
        return "apple_mpp" if kind == "open" else "bot"
    if _BOT_UA.search(agent):
        return "bot"
    if kind == "click" and _LINK_CHECK_UA.search(agent):
        return "bot"
    return None


def _apple_address(ip: str | None) -> bool:
    if not ip:
        return False
    if ip.startswith("::ffff:"):
        ip = ip[7:]
    return ip.startswith("17.") and ip.count(".") == 3


def machine_reason(kind: Kind, user_agent: str | None, ip: str | None) -> str | None:
    """Why a hit is a machine's, judging by who asked; None for a person (so far)."""
    if _apple_address(ip) and kind == "open":
        return "apple_mpp"
    return _agent_reason(user_agent or "", kind)


# --- hits and writing them --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """One verified open or click, waiting to be written."""

    kind: Kind
    enrollment_id: int
    step: int
    at: datetime
    user_agent: str
    machine: str | None  # from the User-Agent and address; timing is judged when written
    url: str | None = None


def open_hit(
    secret: str, token: str, user_agent: str | None, ip: str | None, now: datetime
) -> Hit | None:
    """The hit of an open pixel request; None for a forged or altered token."""
    ids = parse_open(token, secret)
    if ids is None:
        return None
    reason = machine_reason("open", user_agent, ip)
    return Hit("open", ids[0], ids[1], now, (user_agent or "")[:MAX_USER_AGENT], reason)


def click_hit(
    secret: str, token: str, user_agent: str | None, ip: str | None, now: datetime
) -> Hit | None:
    """The hit of a tracked link; None for a forged or altered token or an unsafe URL."""
    found = parse_click(token, secret)
    if found is None:
        return None
    enrollment_id, step, url = found
    reason = machine_reason("click", user_agent, ip)
    agent = (user_agent or "")[:MAX_USER_AGENT]
    return Hit("click", enrollment_id, step, now, agent, reason, url)


def human_events() -> sa.ColumnElement[bool]:
    """Events not marked as a machine's: SQL for SQLite and PostgreSQL alike."""
    return col(Event.data)["machine"].as_string().is_(None)


_ADD_EVENTS = sa.insert(Event.__table__)  # type: ignore[attr-defined]
_TYPES: dict[str, EventType] = {"open": EventType.OPENED, "click": EventType.CLICKED}


# on PostgreSQL a batch of events is one statement, one parameter and one round trip
_ADD_EVENTS_PG = """
INSERT INTO event (prospect_id, enrollment_id, sequence_id, step, type, at, data)
SELECT prospect_id, enrollment_id, sequence_id, step, type, at, data
FROM json_to_recordset(%(rows)s::json) AS r(prospect_id int, enrollment_id int,
     sequence_id text, step int, type text, at timestamptz, data json)
"""


def _add_events(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(_ADD_EVENTS, rows)
        return
    batch = json.dumps([{**row, "at": row["at"].isoformat()} for row in rows])
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(_ADD_EVENTS_PG, {"rows": batch})


Key = tuple[int, int, str]  # (enrollment_id, step, event type): one email's open or click


@dataclass(frozen=True, slots=True)
class Owner:
    """What an event needs of its enrollment; it never changes."""

    id: int
    prospect_id: int
    sequence_id: str


class Memory:
    """Facts a recorder learnt from the database that stay true, so that repeat hits need
    no look-up: whose each enrollment is, when each email went out, and which emails have
    earned their open or click points. Only a cache: forgetting costs a query."""

    def __init__(self, limit: int = MEMORY_LIMIT) -> None:
        self.limit = limit
        self.owners: dict[int, Owner] = {}
        self.sent: dict[tuple[int, int], datetime] = {}
        self.scored: set[Key] = set()

    def trim(self) -> None:
        """Forget everything once a kind of fact grows past the limit."""
        for facts in (self.owners, self.sent, self.scored):
            if len(facts) > self.limit:
                facts.clear()


def apply(
    session: Session, app: App, hits: Sequence[Hit], memory: Memory | None = None
) -> tuple[int, set[Key]]:
    """Record hits in the session: events, and points for a person's first open or click
    of each email. Returns how many were recorded (hits of unknown enrollments are not)
    and the keys of the emails now known to have earned their points, by these hits or
    before, for `memory.scored` once the transaction is committed."""
    if not hits:
        return 0, set()
    memory = memory or Memory()
    owners = _owners(session, hits, memory)
    if not owners:
        return 0, set()
    sent = _sent_times(session, hits, owners, memory)
    scanner = app.settings.scanner_seconds
    rows: list[dict[str, Any]] = []
    candidates: dict[Key, Hit] = {}
    for hit in hits:
        owner = owners.get(hit.enrollment_id)
        if owner is None:
            continue
        type_ = str(_TYPES[hit.kind])
        machine = hit.machine
        if machine is None and hit.kind == "click":
            went_out = sent.get((hit.enrollment_id, hit.step))
            if went_out is not None and (hit.at - went_out).total_seconds() < scanner:
                machine = "scanner"
        data: dict[str, Any] = {"machine": machine, "user_agent": hit.user_agent, "url": hit.url}
        rows.append(
            {
                "prospect_id": owner.prospect_id,
                "enrollment_id": owner.id,
                "sequence_id": owner.sequence_id,
                "step": hit.step,
                "type": type_,
                "at": hit.at,
                "data": {k: v for k, v in data.items() if v},
            }
        )
        key = (hit.enrollment_id, hit.step, type_)
        if machine is None and key not in memory.scored:
            candidates.setdefault(key, hit)
    earning, scored = (
        _first_of_their_email(session, candidates, owners) if candidates else ({}, set())
    )
    _add_events(session, rows)
    if earning:
        enrollments = {
            e.id: e
            for e in session.scalars(
                select(Enrollment).where(col(Enrollment.id).in_({k[0] for k in earning}))
            )
        }
        people = {
            p.id: p
            for p in session.scalars(
                select(Prospect).where(
                    col(Prospect.id).in_({owners[k[0]].prospect_id for k in earning})
                )
            )
        }
        for (enrollment_id, _, _), hit in earning.items():
            enrollment = enrollments[enrollment_id]
            person = people[enrollment.prospect_id]
            engagement.score(session, app.versions, person, enrollment, hit.kind, hit.at)
    return len(rows), scored | set(earning)


def _owners(session: Session, hits: Sequence[Hit], memory: Memory) -> dict[int, Owner]:
    """The enrollments the hits credit, known or looked up; unknown ones are left out."""
    known = memory.owners
    wanted = {hit.enrollment_id for hit in hits}
    missing = wanted - known.keys()
    if missing:
        query = select(Enrollment.id, Enrollment.prospect_id, Enrollment.sequence_id).where(
            col(Enrollment.id).in_(missing)
        )
        for row in session.execute(query):
            known[row.id] = Owner(row.id, row.prospect_id, row.sequence_id)
    return {i: known[i] for i in wanted if i in known}


def _sent_times(
    session: Session, hits: Sequence[Hit], owners: Mapping[int, Owner], memory: Memory
) -> dict[tuple[int, int], datetime]:
    """When each clicked email went out, for the clicks that may be a scanner's."""
    known = memory.sent
    missing = {
        h.enrollment_id
        for h in hits
        if h.kind == "click"
        and h.machine is None
        and h.enrollment_id in owners
        and (h.enrollment_id, h.step) not in known
    }
    if not missing:
        return known
    times = dict(known)
    query = select(Send.enrollment_id, Send.step, Send.sent_at, Send.started_at).where(
        col(Send.enrollment_id).in_(missing)
    )
    for eid, step, sent_at, started_at in session.execute(query):
        if sent_at is not None:
            known[(eid, step)] = times[(eid, step)] = sent_at  # final once set: remembered
        elif started_at is not None:
            times[(eid, step)] = started_at  # still being recorded: asked again next time
    return times


def _first_of_their_email(
    session: Session, candidates: Mapping[Key, Hit], owners: Mapping[int, Owner]
) -> tuple[dict[Key, Hit], set[Key]]:
    """The candidates whose email has no person's open (or click) recorded yet, and the
    keys of those that have one."""
    # the prospects' row locks make "points once" hold between processes, as `flag` does
    prospect_ids = sorted({owners[k[0]].prospect_id for k in candidates})
    session.execute(select(Prospect.id).where(col(Prospect.id).in_(prospect_ids)).with_for_update())
    done = {
        (eid, step, str(type_))
        for eid, step, type_ in session.execute(
            select(Event.enrollment_id, Event.step, Event.type)
            .where(
                col(Event.enrollment_id).in_({k[0] for k in candidates}),
                col(Event.type).in_(list(_TYPES.values())),
                human_events(),
            )
            .distinct()
        )
    }
    earning = {key: hit for key, hit in candidates.items() if key not in done}
    return earning, done & candidates.keys()


def write(app: App, hits: Sequence[Hit], memory: Memory | None = None) -> int:
    """Record hits in one transaction; what earned points joins `memory` once committed."""
    with transaction(app.engine) as session:
        count, scored = apply(session, app, hits, memory)
    if memory is not None:
        memory.scored.update(scored)
    return count


def record_open(
    app: App, token: str, user_agent: str | None, ip: str | None, now: datetime
) -> bool:
    """Record an open at once; False (nothing recorded) for a forged or altered token."""
    hit = open_hit(app.secret, token, user_agent, ip, now)
    if hit is None:
        return False
    write(app, [hit])
    return True


def record_click(
    app: App, token: str, user_agent: str | None, ip: str | None, now: datetime
) -> str | None:
    """Record a click at once; the URL to redirect to, or None for a bad token."""
    hit = click_hit(app.secret, token, user_agent, ip, now)
    if hit is None:
        return None
    write(app, [hit])
    return hit.url


# --- the batching recorder --------------------------------------------------------------

_LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()
# the database cannot be reached (or SQLite is locked): keep the hits and try again later
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)


class Recorder:
    """Writes queued hits from a background thread, a batch per transaction.

    `submit` never blocks on the database. The thread starts with the first hit and ends
    after `idle_seconds` without any; `flush` writes everything queued before it returns.
    """

    def __init__(
        self,
        app: App,
        *,
        interval: float = 0.1,
        batch_size: int = 500,
        max_pending: int = 100_000,
        idle_seconds: float = 10.0,
    ) -> None:
        self.app = app
        self.interval = interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.idle_seconds = idle_seconds
        self.recorded = 0
        self.dropped = 0
        self.failed = 0
        self._pending: deque[Hit] = deque()
        self._memory = Memory()
        self._full = threading.Event()
        self._flushing = threading.Lock()
        self._state = threading.Lock()
        self._running = False
        self._outage = False
        _LIVE.add(self)

    def submit(self, hit: Hit) -> None:
        """Queue a verified hit; it is written within about `interval` seconds."""
        pending = self._pending
        if len(pending) >= self.max_pending:
            self.dropped += 1
            return
        # under the lock the writer takes to stop: a hit is never left without a writer
        with self._state:
            pending.append(hit)
            start = not self._running
            self._running = True
        if start:
            self._spawn()
        elif len(pending) >= self.batch_size:
            self._full.set()

    def pending(self) -> int:
        """Hits queued and not yet written."""
        return len(self._pending)

    def flush(self) -> int:
        """Write every hit queued so far; returns how many were recorded. While the database
        cannot be reached the hits stay queued (in order) for the next try."""
        written = 0
        with self._flushing:
            try:
                while self._pending:
                    batch: list[Hit] = []
                    while self._pending and len(batch) < self.batch_size:
                        batch.append(self._pending.popleft())
                    written += self._write(batch)
            except _UNAVAILABLE as exc:
                if not self._outage:
                    self._outage = True
                    log.warning(
                        "tracking: the database is unavailable (%s); %d hits wait",
                        exc.__class__.__name__,
                        len(self._pending),
                    )
                return written
            if self._outage:
                self._outage = False
                log.warning("tracking: the database is back; queued hits written")
        return written

    def close(self) -> None:
        """Write what is queued; the thread ends on its own once idle."""
        self.flush()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._run, name="outreach-tracking", daemon=True)
        thread.start()

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            self._full.wait(self.interval)
            self._full.clear()
            if self._pending:
                try:
                    self.flush()
                except Exception:  # never let the writer die: the next round tries again
                    log.exception("tracking: writing queued hits failed")
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.idle_seconds:
                with self._state:
                    if not self._pending:  # a hit queued meanwhile keeps this thread
                        self._running = False
                        return

    def _write(self, batch: list[Hit]) -> int:
        self._memory.trim()
        try:
            count = write(self.app, batch, self._memory)
        except _UNAVAILABLE:
            self._pending.extendleft(reversed(batch))
            raise
        except Exception:
            log.warning("tracking: a batch of %d hits failed; retrying one by one", len(batch))
            count = 0
            for index, hit in enumerate(batch):
                try:
                    count += write(self.app, [hit], self._memory)
                except _UNAVAILABLE:
                    self._pending.extendleft(reversed(batch[index:]))
                    self.recorded += count
                    raise
                except Exception:
                    self.failed += 1
                    log.exception(
                        "tracking: lost the %s of enrollment %s", hit.kind, hit.enrollment_id
                    )
        self.recorded += count
        return count


def recorders(app: App | None = None) -> list[Recorder]:
    """The live recorders (of one App)."""
    return [r for r in list(_LIVE) if app is None or r.app is app]


def flush(app: App | None = None) -> int:
    """Write what every live recorder (of one App) holds: for tests and shutdown."""
    return sum(r.flush() for r in recorders(app))


def _flush_at_exit() -> None:
    for recorder in recorders():
        try:
            recorder.flush()
        except Exception:
            log.exception("tracking: hits lost at exit")


atexit.register(_flush_at_exit)


__all__ = [
    "PIXEL",
    "Hit",
    "Recorder",
    "apply",
    "click_hit",
    "click_token",
    "flush",
    "human_events",
    "machine_reason",
    "open_hit",
    "open_token",
    "parse_click",
    "parse_open",
    "record_click",
    "record_open",
    "safe_destination",
    "track_html",
    "write",
]
