"""The date an absent person is back, read from an auto-reply in EN, DE, FR, ES or SV.

Dates it reads: ISO ("2026-12-14"); numeric ("14.12.2026", "14/12", "12/14/2026": with
"/" or "-" the month comes first only in English text, unless that gives no valid date;
with "." the day always comes first); day and month name in the five languages with
abbreviations ("14 December", "December 14th", "14. Dez.", "le 14 décembre", "14 de
diciembre", "14:e december"), with an optional weekday before it; a weekday alone
("back on Monday": the next such weekday after the message was received); "the 14th" /
"jusqu'au 14" (a day of the month after an article or with an ordinal); "tomorrow".
A date without a year is its next occurrence on or after the received day (when a
weekday is given too, the year in which the weekday fits is preferred), except that a day
that passed less than 90 days before is taken as a stale notice the person forgot to
turn off ("until 30 November" received on 7 December), not as next year's: pausing a
sequence for a year on such a notice would lose the prospect.

A date counts only with an anchor word just before it (at most five words apart, none of
them a number), which also says what the date means:

- back ("back on", "returning", "wieder", "de retour le", "regreso el", "tillbaka den"):
  the person is back on that day;
- until ("until", "till", "bis", "jusqu'au", "hasta", Swedish "till"): also taken as the
  day they are back. "Out until the 14th" is ambiguous (back on the 14th, or on the
  15th?); reading it as the 14th resumes a sequence at worst a day early, which a sales
  team prefers to a day late;
- inclusive ("through", "up to and including", "bis einschließlich", "till och med",
  "t.o.m.", or "until X inclusive/inclus/incluido/inklusive"): the day after;
- a range end ("from 1 to 14 December", "1-14 Dec", "du 1er au 14", "del 1 al 14"): the
  end, read like "until";
- from ("from", "ab", "à partir du", "a partir del", "från och med"): only when the same
  clause then says the person is back ("ab dem 15.12. bin ich wieder im Büro"); an
  unanchored date followed by such words ("Am 15.12. bin ich wieder da") counts too.

A "back" date wins over an "until" one; otherwise the first in the text wins. A result
before the received day, or more than a year after it, is no answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

MAX_AHEAD = timedelta(days=370)
STALE = timedelta(days=90)  # a year-less date this recently past is an old notice, not next year's
MAX_CHARS = 2000  # how much of a text is searched for a date
_WINDOW = 80  # characters before a date searched for its anchor

_MONTH_NAMES: dict[int, tuple[str, ...]] = {
    1: ("january", "jan", "januar", "jänner", "jän", "janvier", "janv", "enero", "ene", "januari"),
    2: ("february", "feb", "februar", "février", "fevrier", "févr", "fevr", "febrero", "februari"),
    3: ("march", "mar", "märz", "maerz", "mär", "mars", "marzo"),
    4: ("april", "apr", "avril", "avr", "abril", "abr"),
    5: ("may", "mai", "mayo", "maj"),
    6: ("june", "jun", "juni", "juin", "junio"),
    7: ("july", "jul", "juli", "juillet", "juil", "julio"),
    8: ("august", "aug", "août", "aout", "agosto", "ago", "augusti"),
    9: ("september", "sep", "sept", "septembre", "septiembre", "setiembre"),
    10: ("october", "oct", "oktober", "okt", "octobre", "octubre"),
    11: ("november", "nov", "novembre", "noviembre"),
    12: ("december", "dec", "dezember", "dez", "décembre", "decembre", "déc", "diciembre", "dic"),
}
_WEEKDAY_NAMES: dict[int, tuple[str, ...]] = {
    0: ("monday", "montag", "lundi", "lunes", "måndag", "måndagen"),
    1: ("tuesday", "dienstag", "mardi", "martes", "tisdag", "tisdagen"),
    2: ("wednesday", "mittwoch", "mercredi", "miércoles", "miercoles", "onsdag", "onsdagen"),
    3: ("thursday", "donnerstag", "jeudi", "jueves", "torsdag", "torsdagen"),
    4: ("friday", "freitag", "vendredi", "viernes", "fredag", "fredagen"),
    5: ("saturday", "samstag", "sonnabend", "samedi", "sábado", "sabado", "lördag", "lördagen"),
    6: ("sunday", "sonntag", "dimanche", "domingo", "söndag", "söndagen"),
}
# abbreviations allowed only in front of a full date ("Mon, Dec 14", "Mo., 14.12.")
_WEEKDAY_ABBREVIATIONS = (
    "mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|mo|di|mi|do|fr|sa|so|"
    "lun|mar|mer|jeu|ven|sam|dim|mié|mie|jue|vie|sáb|dom|mån|tis|ons|tor|fre|lör|sön"
)
_MONTHS = {name: number for number, names in _MONTH_NAMES.items() for name in names}
_WEEKDAYS = {name: number for number, names in _WEEKDAY_NAMES.items() for name in names}


def _alternation(names: Iterable[str]) -> str:
    """A regex alternation of the names, longest first."""
    return "|".join(sorted((re.escape(name) for name in names), key=len, reverse=True))


_MON = rf"(?:{_alternation(_MONTHS)})(?![^\W\d_])\.?"
_WD_ABBREVIATIONS = frozenset(_WEEKDAY_ABBREVIATIONS.split("|"))
_ORD = r"(?:st|nd|rd|th|er|re|e|:e|:a|\.)?"
_TIME_AFTER = (
    r"(?!\s*(?:uhr|h\b|hrs?\b|am\b|pm\b|a\.m|p\.m|heures?|horas?|hours?|days?|tage?n?|jours?|"
    r"d[íi]as|dagar|weeks?|wochen|semaines?|semanas?|veckor|%|:\d|kl\b))"
)
# a bare day number must not be the start of a longer date ("14. Dezember", "14.12.")
_NO_MONTH_AFTER = rf"(?![\d./:-]\d|{_ORD}\s*(?:of\s+|de\s+)?{_MON})"
_WORD = r"(?<![^\W\d_])(?P<word>[^\W\d_]{3,11})(?![^\W\d_])"

# Each form starts with a digit or a whole word, so the scan stays fast; month and
# weekday words are checked against the tables after a match.
_FORMS: dict[str, re.Pattern[str]] = {
    "iso": re.compile(r"(?<!\d)(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?!\d)"),
    "dmy": re.compile(
        rf"(?<!\w)(?P<d>[0-3]?\d)(?!\d){_ORD}\s*(?:of\s+|de\s+)?{_WORD}\.?"
        r"(?:,?\s*(?:de\s+)?(?P<y>\d{4})\b)?",
        re.I,
    ),
    "mdy": re.compile(
        rf"{_WORD}\.?\s+(?:the\s+)?(?:(?P<d0>[0-3]?\d)(?:st|nd|rd|th)?\s*"
        r"(?:-|\u2013|to|through|thru)\s*)?(?P<d>[0-3]?\d)(?!\d)(?:st|nd|rd|"
        r"th)?\b(?:,?\s+(?P<y>\d{4})\b)?",
        re.I,
    ),
    "numeric": re.compile(
        r"(?<![\d./])(?P<a>[0-3]?\d)(?P<sep>[./-])(?P<b>[0-3]?\d)"
        r"(?:(?P=sep)(?P<y>\d{4}|\d{2}))?(?!\d|[./]\d)\.?" + _TIME_AFTER,
        re.I,
    ),
    "weekday": re.compile(
        rf"{_WORD}(?:,?\s+(?:(?:the|den|le|el)\s+)?(?P<d>[0-3]?\d)(?!\d){_ORD}"
        + _NO_MONTH_AFTER
        + _TIME_AFTER
        + ")?",
        re.I,
    ),
    "day": re.compile(
        r"(?<![\w./:-])(?P<d>[0-3]?\d)(?!\d)(?P<ord>st|nd|rd|th|er|:e|:a|\.)?"
        + _NO_MONTH_AFTER
        + _TIME_AFTER,
        re.I,
    ),
    "tomorrow": re.compile(
        r"\b(?:tomorrow|morgen|demain|mañana|manana|imorgon|i\s+morgon)\b", re.I
    ),
}
_WEEKDAY_BEFORE_RE = re.compile(
    r"(?<![^\W\d_])(?P<word>[^\W\d_]{2,11})(?P<p>\.?,?)\s+(?:(?:the|den|le|el|der|dem)\s+)?$"
)
_ARTICLE_BEFORE_RE = re.compile(r"(?<![^\W\d_])(?:the|au|el|zum|den|dem)\s+$", re.I)
_MORNING_BEFORE_RE = re.compile(r"\bla\s+$", re.I)

_ANCHOR_RE = re.compile(
    r"(?<!\w)(?:(?P<incl>\bthrough|\bthru|\bup\s+to\s+and\s+including|\band\s+including|"
    r"\bincluding|"
    r"\beinschlie(?:ß|ss)lich|\binklusive|\binkl\b\.?|\btill\s+och\s+med|\bt\.\s?o\.\s?m\b\.?|"
    r"\by\s+compris)"
    r"|(?P<back>\bback\b|\breturn\w*|\bresum\w*|\bretour\w*|\brentr\w+|\brevien\w*|\breviendr\w*|"
    r"\bregres\w*|\bvuelv\w*|\bvolver\w*|\bvuelta\b|\bwieder\b|\bzur(?:ü|ue)ck\w*|\btillbaka\b|"
    r"\båter\b|\båterkommer\b|\båtervänder\b|\bpå\s+plats\s+igen)"
    r"|(?P<until>\buntil\b|\btill\b|\btil\b|'til\b|\bbis\b|\bjusqu['\u2019]?\s*(?:au|aux|à|a|le)?|"
    r"\bhasta\b|\bfram\s+till\b)"
    r"|(?P<from>\bfrom\b|\bstarting\b|\bbeginning\b|\bas\s+of\b|\bab\b|\bvom\b|\bvon\b|"
    r"\bà\s+partir\s+du?\b|\bd[èe]s\s+le\b|\ba\s+partir\s+del?\b|\bdesde\b|"
    r"\bfrån(?:\s+och\s+med)?\b|\bfr\.\s?o\.\s?m\b\.?))",
    re.I,
)
_GAP_RE = re.compile(r"[\s,:(]*(?:[^\W\d][\w'\u2019]*[\s,:(]+){0,5}")
_BARE_BEFORE_WORDS = frozenset(("on", "am", "le", "el", "den", "the"))
_RANGE_WORDS = frozenset(("to", "au", "al", "a", "till", "bis"))
_RANGE_TAIL_RE = re.compile(
    rf"(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}[./]\d{{1,2}}[./]?(?:\d{{2,4}})?|"
    rf"\b[0-3]?\d{_ORD}(?:\s+(?:de\s+)?{_MON})?(?:\s+\d{{4}})?)"
    r"\s*(?:-|\u2013|\u2014|to|au|al|a|till|bis)\s*$",
    re.I,
)
_INCLUSIVE_AFTER_RE = re.compile(
    r"^[\s,(]*(?:inclusive|inclusivement|inclus|incluse?|incluido|incluida|incluso|"
    r"einschlie(?:ß|ss)lich|inklusive|inkl\b|included|inclusively)",
    re.I,
)
_BACK_AFTER_RE = re.compile(
    r"(?<!get )(?<!write )(?<!call )(?<!reply )\b(?:back(?!\s+to\s+you)|wieder|zur(?:ü|ue)ck|"
    r"retour|de\s+vuelta|de\s+nuevo|disponible|tillbaka|åter|available|erreichbar|joignable|"
    r"reachable)\b",
    re.I,
)
_CLAUSE_BREAK_RE = re.compile(
    r"[.!?;\n]\s|\b(?:and|und|et|y|och|but|aber|mais|pero|men|when|wenn|sobald|quand|lorsque|"
    r"cuando|när|if|falls|si|om)\b",
    re.I,
)
_WS_RE = re.compile(r"\s+")

_RANK = {"back": 0, "incl": 1, "until": 1, "range": 1}
_COMMON_WORDS = {
    "en": "the and i am will be my to of you your with out office until back please for is on",
    "de": "ich und der die das bin nicht im mit sie ihre bis zum wieder bitte ist für den dem",
    "fr": "je suis le la les et du des vous votre au pour avec est serai absent bureau retour",
    "es": "el los las y del estoy fuera hasta con para por usted su oficina que mi regreso",
    "sv": "jag och är till med på den det inte för att av du din er kontoret ledig tillbaka",
}
_LANG_WORDS = {lang: frozenset(words.split()) for lang, words in _COMMON_WORDS.items()}
_WORD_RE = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class ReturnDate:
    """The first day a person is back, and the words it was read from."""

    day: date
    phrase: str
    rule: str  # back, until, incl, range


@dataclass(frozen=True)
class _Found:
    """A date-like span: its form, the regex match, and what was read off around it."""

    start: int
    end: int
    form: str
    match: re.Match[str]
    month: int | None = None
    weekday: int | None = None  # a full weekday name said with the date
    article: bool = False  # "the 14th", "jusqu'au 14", "hasta el 14"


def guess_language(text: str) -> str:
    """The likeliest of en, de, fr, es, sv, by common words in the first 2,000 characters."""
    words = [w.lower() for w in _WORD_RE.findall(text[:2000])]
    scores = {lang: sum(1 for w in words if w in vocab) for lang, vocab in _LANG_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] else "en"


def return_date(text: str, received: date, language: str | None = None) -> ReturnDate | None:
    """The first day the person is back according to `text`, or None."""
    flat = _WS_RE.sub(" ", text[:MAX_CHARS])
    candidates = _find_dates(flat)
    lang = language or "en"
    if language is None and any(found.form == "numeric" for found in candidates):
        lang = guess_language(flat)  # only numeric dates depend on the language
    best: tuple[int, int, ReturnDate] | None = None
    for found in candidates:
        result = _read_candidate(flat, found, received, lang)
        if result is None:
            continue
        key = (_RANK[result.rule], found.start)
        if best is None or key < best[:2]:
            best = (key[0], key[1], result)
    return best[2] if best else None


def _find_dates(text: str) -> list[_Found]:
    """Every date-like span, longest first where they overlap, in text order."""
    lowered = text.lower()
    forms = [
        (form, pattern)
        for form, pattern in _FORMS.items()
        if form != "weekday" or any(name in lowered for name in _WEEKDAYS)
    ]
    found = [
        item
        for form, pattern in forms
        for m in pattern.finditer(text)
        if (item := _checked(text, form, m)) is not None
    ]
    found.sort(key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[_Found] = []
    for item in found:
        if kept and item.start < kept[-1].end:
            continue
        kept.append(item)
    return kept


def _checked(text: str, form: str, m: re.Match[str]) -> _Found | None:
    """A regex match checked against the month and weekday tables, widened to take in a
    weekday or article said just before it; None when it is no date."""
    start = m.start()
    if form in ("dmy", "mdy"):
        month = _MONTHS.get(m.group("word").lower())
        if month is None:
            return None
        start, weekday = _weekday_before(text, start)
        return _Found(start, m.end(), form, m, month=month, weekday=weekday)
    if form == "numeric":
        start, weekday = _weekday_before(text, start)
        return _Found(start, m.end(), form, m, weekday=weekday)
    if form == "weekday":
        weekday = _WEEKDAYS.get(m.group("word").lower())
        if weekday is None:
            return None
        if m.group("d") is None:
            return _Found(start, m.end("word"), "weekday", m, weekday=weekday)
        return _Found(start, m.end(), "weekday_day", m, weekday=weekday)
    if form == "day":
        article = _ARTICLE_BEFORE_RE.search(text, max(0, start - 6), start)
        if article is None and not m.group("ord"):
            return None
        return _Found(
            article.start() if article else start, m.end(), form, m, article=bool(article)
        )
    if form == "tomorrow" and _MORNING_BEFORE_RE.search(text, max(0, start - 4), start):
        return None
    return _Found(start, m.end(), form, m)


def _weekday_before(text: str, start: int) -> tuple[int, int | None]:
    """The start of a weekday said just before a date ("Monday, 14 December"), and which."""
    found = _WEEKDAY_BEFORE_RE.search(text, max(0, start - 25), start)
    if found is None:
        return start, None
    word = found.group("word").lower()
    if word in _WEEKDAYS:
        return found.start(), _WEEKDAYS[word]
    if word in _WD_ABBREVIATIONS and (len(word) > 2 or found.group("p")):
        return found.start(), None
    return start, None


def _read_candidate(text: str, found: _Found, received: date, lang: str) -> ReturnDate | None:
    """A candidate's back date, if its anchor and its value make it one."""
    anchored = _anchor(text, found)
    if anchored is None:
        return None
    rule, start, end = anchored
    day = _resolve(found, received, lang)
    if day is None:
        return None
    if rule in ("until", "range") and _INCLUSIVE_AFTER_RE.match(text[found.end : found.end + 20]):
        rule = "incl"
    if rule == "incl":
        day += timedelta(days=1)
    if day < received or day - received > MAX_AHEAD:
        return None
    phrase = text[start:end].strip()
    return ReturnDate(day, phrase, rule)


def _anchor(text: str, found: _Found) -> tuple[str, int, int] | None:
    """What the date means, from the words before (or, for a bare date, after) it, and
    the span of the phrase that says so."""
    offset = max(0, found.start - _WINDOW)
    window = text[offset : found.start]
    kinds: dict[str, int] = {}
    for anchor in _ANCHOR_RE.finditer(window):
        if anchor.lastgroup and _GAP_RE.fullmatch(window[anchor.end() :]):
            kinds[anchor.lastgroup] = offset + anchor.start()
    tail = (
        _RANGE_TAIL_RE.search(window, max(0, len(window) - 40))
        if _ends_like_range(window)
        else None
    )
    if tail:
        kinds["range"] = offset + tail.start()
    elif found.form == "mdy" and found.match.group("d0"):
        kinds["range"] = found.start
    for kind in ("incl", "back", "until", "range"):
        if kind in kinds:
            return kind, kinds[kind], found.end
    if found.form in ("day", "weekday_day") and "from" not in kinds:
        return None
    if "from" in kinds or _bare_before(window):
        back_end = _says_back_after(text, found.end)
        if back_end:
            return "back", kinds.get("from", found.start), back_end
    return None


def _ends_like_range(window: str) -> bool:
    """Whether the text before a date ends with a range separator ("1 to ", "1-")."""
    tail = window.rstrip()
    if tail.endswith(("-", "\u2013", "\u2014")):
        return True
    words = tail[-6:].split()
    return bool(words) and words[-1].lower() in _RANGE_WORDS


def _bare_before(window: str) -> bool:
    """Whether a date with no anchor starts a sentence or follows "on", "am", "le"..."""
    tail = window.rstrip()
    if not tail or tail[-1] in ".!?:":
        return True
    words = tail[-5:].split()
    return bool(words) and words[-1].lower() in _BARE_BEFORE_WORDS


def _says_back_after(text: str, end: int) -> int:
    """Where the clause after a date says the person is back then; 0 if it does not."""
    after = text[end : end + 60]
    stop = _CLAUSE_BREAK_RE.search(after)
    if stop:
        after = after[: stop.start()]
    back = _BACK_AFTER_RE.search(after)
    return end + back.end() if back else 0


def _resolve(found: _Found, received: date, lang: str) -> date | None:
    """The calendar day a date span names, relative to the received day."""
    m = found.match
    form = found.form
    if form == "tomorrow":
        return received + timedelta(days=1)
    weekday = found.weekday
    if form == "weekday" and weekday is not None:
        return _next_weekday(received, weekday)
    if form == "iso":
        return _make(int(m.group("y")), int(m.group("m")), int(m.group("d")))
    if form in ("dmy", "mdy") and found.month is not None:
        return _dated(received, found.month, int(m.group("d")), m.group("y"), weekday)
    if form == "numeric":
        return _numeric(m, received, lang, weekday)
    return _day_of_month(received, int(m.group("d")), weekday)


def _numeric(m: re.Match[str], received: date, lang: str, weekday: int | None) -> date | None:
    a, b = int(m.group("a")), int(m.group("b"))
    month_first = lang == "en" and m.group("sep") != "."
    day, month = (b, a) if month_first else (a, b)
    if not 1 <= month <= 12 and 1 <= day <= 12:
        day, month = month, day
    if not 1 <= month <= 12:
        return None
    return _dated(received, month, day, m.group("y"), weekday)


def _dated(
    received: date, month: int, day: int, year: str | None, weekday: int | None
) -> date | None:
    """A day and month in the given year; without one, the next such day on or after
    `received`, unless it passed recently (a stale notice: that past day is returned)."""
    if year:
        full = int(year) + (2000 if len(year) == 2 else 0)
        return _make(full, month, day)
    this_year = _make(received.year, month, day)
    if this_year and this_year < received and received - this_year <= STALE:
        return this_year
    options = [
        d
        for y in (received.year, received.year + 1)
        if (d := _make(y, month, day)) and d >= received
    ]
    if weekday is not None:
        fitting = [d for d in options if d.weekday() == weekday]
        if fitting:
            return fitting[0]
    return options[0] if options else None


def _day_of_month(received: date, day: int, weekday: int | None) -> date | None:
    """The next date on/after `received` with this day of the month."""
    year, month = received.year, received.month
    first: date | None = None
    for _ in range(13):
        candidate = _make(year, month, day)
        if candidate and candidate >= received:
            if weekday is None or candidate.weekday() == weekday:
                return candidate
            first = first or candidate
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return first


def _next_weekday(received: date, weekday: int) -> date:
    """The first such weekday strictly after the received day."""
    ahead = (weekday - received.weekday() - 1) % 7 + 1
    return received + timedelta(days=ahead)


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None
