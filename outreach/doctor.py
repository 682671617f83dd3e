"""`outreach doctor`: checks the settings and every service they name, changing nothing.

Each check ends ok, warning or error with a message in plain words and a hint saying what
to do. Nothing is written: the database is not upgraded (pending migrations are counted),
a missing SQLite file is not created, the IMAP mailbox is opened read-only and SMTP gets
no message, only EHLO, STARTTLS, AUTH and QUIT.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import ValidationError

from outreach import db
from outreach.errors import OutreachError
from outreach.sequence import validate_folder
from outreach.settings import Settings
from outreach.template import parse_limits

Status = Literal["ok", "warning", "error"]
TIMEOUT = 5.0
BROKER_TIMEOUT = 2.0


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    check: str
    status: Status
    message: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        """The JSON shape: check, status, message, hint."""
        return asdict(self)


def failed(checks: list[Check]) -> bool:
    """Whether any check ended in an error."""
    return any(c.status == "error" for c in checks)


def run(settings: Settings | None = None) -> list[Check]:
    """Every check, in order; settings are loaded from the environment unless given."""
    if settings is None:
        try:
            settings = Settings()
        except ValidationError as exc:
            return [settings_error(exc)]
    try:
        parse_limits(settings.render_limits)
    except ValueError as exc:
        return [Check("settings", "error", f"OUTREACH_RENDER_LIMITS: {exc}", "e.g. 100kB,2s")]
    checks = [Check("settings", "ok", "settings loaded")]
    steps: list[Callable[[Settings], list[Check]]] = [
        check_folders,
        check_database,
        check_broker,
        check_smtp,
        check_dkim,
        check_imap,
        check_base_url,
        check_secrets,
    ]
    for step in steps:
        try:
            checks.extend(step(settings))
        except Exception as exc:  # a check must never crash the doctor
            name = step.__name__.removeprefix("check_")
            checks.append(Check(name, "error", f"the check itself failed: {exc!r}"))
    return checks


def settings_error(exc: ValidationError) -> Check:
    """Pydantic's errors as `OUTREACH_NAME: message` lines."""
    lines = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper()
        lines.append(f"OUTREACH_{name}: {error['msg']} (got {error.get('input')!r})")
    return Check(
        "settings",
        "error",
        "; ".join(lines) or str(exc),
        "fix these variables in the environment or the .env file",
    )


def check_folders(settings: Settings) -> list[Check]:
    """The sequences and templates folders exist and everything in them validates."""
    checks = []
    missing = False
    for label, folder in (
        ("sequences", settings.sequences_dir),
        ("templates", settings.templates_dir),
    ):
        if folder.is_dir():
            checks.append(Check(f"{label} folder", "ok", f"{folder} exists"))
        else:
            missing = True
            variable = f"OUTREACH_{label.upper()}_DIR"
            checks.append(
                Check(
                    f"{label} folder",
                    "error",
                    f"{folder} is not a folder",
                    f"set {variable}, or run `outreach init` for example files",
                )
            )
    if missing:
        return checks
    errors = validate_folder(settings.sequences_dir, settings.templates_dir)
    if errors:
        checks.append(
            Check(
                "validate",
                "error",
                "; ".join(errors),
                "fix these lines (`outreach validate` lists them one per line)",
            )
        )
    else:
        checks.append(Check("validate", "ok", "every sequence and template is valid"))
    return checks


def check_database(settings: Settings) -> list[Check]:
    """The database answers and its schema is at the newest migration."""
    url = settings.database_url
    where = _safe_url(url)
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            if not path.exists():
                return [
                    Check(
                        "database",
                        "warning",
                        f"{path} does not exist yet; {_pending(None)} migrations pending",
                        "the first command creates and migrates it",
                    )
                ]
            # read-only: the doctor must not switch the journal mode or take write locks
            engine = sa.create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
        else:
            engine = db.make_engine(url)
    else:
        engine = db.make_engine(url, pool_size=1, max_overflow=0, connect_args=_timeout(url))
    script = _script()
    head = script.get_current_head()
    parked: list[str] = []
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            if current == head:
                parked = list(connection.scalars(PARKED))
    except Exception as exc:
        return [
            Check(
                "database",
                "error",
                f"cannot reach {where}: {_first_line(exc)}",
                "check OUTREACH_DATABASE_URL and that the database server is up",
            )
        ]
    finally:
        engine.dispose()
    if current == head:
        return [
            Check("database", "ok", f"{where} is at the newest migration ({head})"),
            *_parked(parked),
        ]
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        return [
            Check(
                "database",
                "error",
                f"{where} is at migration {current}, which this version does not know",
                "the database was migrated by a newer outreach: upgrade outreach",
            )
        ]
    return [
        Check(
            "database",
            "warning",
            f"{where} is reachable; {_pending(current)} migrations pending",
            "any outreach command applies them on first use",
        )
    ]


# enrollments set aside because one step kept killing its worker (outreach.crashes)
PARKED = sa.text(
    "SELECT p.email FROM enrollment e JOIN prospect p ON p.id = e.prospect_id "
    "WHERE e.state = 'paused' AND e.reason LIKE 'parked:%' ORDER BY e.id LIMIT 20"
)


def _parked(emails: list[str]) -> list[Check]:
    if not emails:
        return []
    shown = ", ".join(emails[:5]) + (" and more" if len(emails) > 5 else "")
    return [
        Check(
            "parked",
            "warning",
            f"{len(emails)}{'+' if len(emails) == 20 else ''} enrollments parked: a step "
            f"stopped its worker again and again ({shown})",
            "find the enrollment ids in the worker logs; `outreach resume EMAIL` tries again",
        )
    ]


def _script() -> ScriptDirectory:
    return ScriptDirectory(str(db.MIGRATIONS))


def _pending(current: str | None) -> int:
    """How many migrations lie between `current` (None: an empty database) and the head."""
    count = 0
    for revision in _script().walk_revisions():
        if revision.revision == current:
            break
        count += 1
    return count


def _timeout(url: str) -> dict[str, object]:
    return {"connect_timeout": int(TIMEOUT)} if url.startswith("postgresql") else {}


def check_broker(settings: Settings) -> list[Check]:
    """The Redis broker answers a PING within two seconds."""
    url = settings.broker_url
    if not url:
        return [
            Check(
                "broker",
                "ok",
                "in-process broker: steps are sent by the command or process that ticks",
                "set OUTREACH_BROKER_URL=redis://… to run separate workers",
            )
        ]
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return [
            Check(
                "broker",
                "error",
                f"unsupported broker URL scheme: {urlsplit(url).scheme}://",
                "use redis://host:port/db",
            )
        ]
    import redis

    where = _safe_url(url)
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=BROKER_TIMEOUT, socket_timeout=BROKER_TIMEOUT
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return [
            Check(
                "broker",
                "error",
                f"Redis at {where} did not answer: {_first_line(exc)}",
                "check OUTREACH_BROKER_URL and that Redis is running",
            )
        ]
    return [Check("broker", "ok", f"Redis at {where} answered PING")]


def check_smtp(settings: Settings) -> list[Check]:
    """Connect, EHLO, STARTTLS when offered, LOGIN when the URL has credentials, QUIT."""
    from outreach.mailers.smtp import SmtpSettings, _greet, _open, _quit

    if not settings.smtp_url:
        return [
            Check(
                "smtp",
                "ok",
                f"outbox mode: each message is written as an .eml file in "
                f"{settings.outbox_dir.resolve()}",
                "set OUTREACH_SMTP_URL=smtp://user:pass@host:587 to send for real",
            )
        ]
    try:
        smtp = SmtpSettings.from_url(settings.smtp_url)
    except OutreachError as exc:
        return [Check("smtp", "error", str(exc), "OUTREACH_SMTP_URL=smtp://[user:pass@]host:port")]
    where = f"{smtp.host}:{smtp.port}"
    timeout = min(settings.smtp_timeout, 10.0)
    try:
        conn = _open(smtp, smtp.helo or socket.getfqdn(), timeout)
    except (OSError, smtplib.SMTPException) as exc:
        return [
            Check(
                "smtp",
                "error",
                f"cannot connect to SMTP server {where}: {_first_line(exc)}",
                "check the host and port in OUTREACH_SMTP_URL and any firewall",
            )
        ]
    try:
        _greet(conn, smtp)
        tls = smtp.implicit_tls or isinstance(conn.sock, ssl.SSLSocket)
    except smtplib.SMTPAuthenticationError as exc:
        _quit(conn, politely=False)
        return [
            Check(
                "smtp",
                "error",
                f"SMTP server {where} refused the login for {smtp.username}: "
                f"{exc.smtp_code} {_said(exc.smtp_error)}",
                "check the user and password in OUTREACH_SMTP_URL (URL-encode special characters)",
            )
        ]
    except smtplib.SMTPResponseException as exc:
        _quit(conn, politely=False)
        return [
            Check(
                "smtp",
                "error",
                f"SMTP server {where} answered {exc.smtp_code} {_said(exc.smtp_error)}",
                "check OUTREACH_SMTP_URL (?starttls=no, ?verify=no for test servers)",
            )
        ]
    except (OSError, smtplib.SMTPException, UnicodeError) as exc:
        _quit(conn, politely=False)
        return [
            Check(
                "smtp",
                "error",
                f"SMTP session with {where} failed: {_first_line(exc)}",
                "for a self-signed test server add ?verify=no to OUTREACH_SMTP_URL",
            )
        ]
    _quit(conn)
    login = f", logged in as {smtp.username}" if smtp.username else ""
    if tls:
        return [Check("smtp", "ok", f"SMTP server {where} answered (TLS{login})")]
    return [
        Check(
            "smtp",
            "warning",
            f"SMTP server {where} answered, but the connection is not encrypted{login}",
            "use a server offering STARTTLS, or smtps:// for implicit TLS",
        )
    ]


def check_dkim(settings: Settings) -> list[Check]:
    """The key file and the selector are set together, and the key is a PEM RSA key."""
    key_file, selector = settings.dkim_key_file, settings.dkim_selector
    if key_file is None and not selector:
        return [
            Check(
                "dkim",
                "ok",
                "DKIM signing is off (neither key file nor selector set)",
                "set OUTREACH_DKIM_KEY_FILE and OUTREACH_DKIM_SELECTOR unless your relay signs",
            )
        ]
    if key_file is None or not selector:
        missing = "OUTREACH_DKIM_SELECTOR" if key_file else "OUTREACH_DKIM_KEY_FILE"
        return [
            Check(
                "dkim",
                "error",
                f"{missing} is unset: DKIM needs both a key file and a selector",
                f"set {missing}, or unset both to send unsigned",
            )
        ]
    try:
        data = key_file.read_bytes()
    except OSError as exc:
        return [
            Check(
                "dkim",
                "error",
                f"cannot read the DKIM key file {key_file}: {exc.strerror or exc}",
                "check OUTREACH_DKIM_KEY_FILE and the file's permissions",
            )
        ]
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        return [
            Check(
                "dkim",
                "error",
                f"{key_file} is not an unencrypted PEM private key: {_first_line(exc)}",
                "export the key as PEM without a passphrase (openssl genrsa -out key.pem 2048)",
            )
        ]
    if not isinstance(key, rsa.RSAPrivateKey):
        return [
            Check(
                "dkim",
                "error",
                f"{key_file} holds a {type(key).__name__}, not an RSA key",
                "DKIM signing here is rsa-sha256: use an RSA key",
            )
        ]
    if key.key_size < 1024:
        return [
            Check(
                "dkim",
                "error",
                f"{key_file} is a {key.key_size}-bit RSA key: receivers ignore it",
                "use a 2048-bit key",
            )
        ]
    return [
        Check(
            "dkim",
            "ok",
            f"{key.key_size}-bit RSA key in {key_file}, selector {selector}",
            f"publish the public key at {selector}._domainkey.<your domain>",
        )
    ]


def check_imap(settings: Settings) -> list[Check]:
    """Log in to the IMAP mailbox and open it read-only, when OUTREACH_IMAP_URL is set."""
    if not settings.imap_url:
        return [
            Check(
                "imap",
                "ok",
                "no IMAP mailbox set: replies and bounces come by `outreach ingest` or webhook",
                "set OUTREACH_IMAP_URL=imaps://user:pass@host/INBOX for `outreach inbox`",
            )
        ]
    from outreach.inbound.imap import Mailbox, imap_errors

    try:
        mailbox = Mailbox(settings.imap_url, timeout=TIMEOUT)
    except OutreachError as exc:
        return [Check("imap", "error", str(exc), "fix OUTREACH_IMAP_URL")]
    s = mailbox.settings
    try:
        with imap_errors(s):
            client = mailbox._open()
        try:
            with imap_errors(s, refused=True):
                client.login(s.username, s.password)
                client.select_folder(s.mailbox, readonly=True)
                move_missing = bool(s.move_to) and not client.folder_exists(s.move_to)
        finally:
            try:
                client.logout()
            except Exception:
                client.shutdown()
    except OutreachError as exc:
        return [Check("imap", "error", str(exc), "check OUTREACH_IMAP_URL")]
    if move_missing:
        return [
            Check(
                "imap",
                "warning",
                f"logged in to {s.where}; the folder {s.move_to} does not exist",
                "`outreach inbox` creates it on its first pass",
            )
        ]
    return [Check("imap", "ok", f"logged in to {s.where} as {s.username}")]


def check_base_url(settings: Settings) -> list[Check]:
    """Links point at https in production: RFC 8058 one-click unsubscribe needs it."""
    parts = urlsplit(settings.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            Check(
                "base url",
                "error",
                f"{settings.base_url!r} is not an http(s) address",
                "set OUTREACH_BASE_URL=https://outreach.example.com",
            )
        ]
    if parts.scheme != "https":
        return [
            Check(
                "base url",
                "warning",
                f"{settings.base_url} is not https: mailbox providers ignore one-click "
                "unsubscribe (RFC 8058) on plain http",
                "set OUTREACH_BASE_URL to the public https address of `outreach serve`",
            )
        ]
    return [Check("base url", "ok", f"links point at {settings.base_url}")]


def check_secrets(settings: Settings) -> list[Check]:
    """The API tokens and the inbound webhook secret are set."""
    checks = []
    if settings.api_tokens:
        checks.append(Check("api tokens", "ok", "API tokens are set"))
    else:
        checks.append(
            Check(
                "api tokens",
                "warning",
                "OUTREACH_API_TOKENS is unset: the HTTP API and web pages accept no one",
                "set OUTREACH_API_TOKENS to one or more long random tokens",
            )
        )
    if settings.inbound_secret:
        checks.append(Check("inbound secret", "ok", "the inbound webhook secret is set"))
    else:
        checks.append(
            Check(
                "inbound secret",
                "warning",
                "OUTREACH_INBOUND_SECRET is unset: POST /api/inbound accepts no mail",
                "set OUTREACH_INBOUND_SECRET to a long random string shared with your provider",
            )
        )
    return checks


def _safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        parts = urlsplit(url)
        return (
            f"{parts.scheme}://{parts.hostname or ''}{':' if parts.port else ''}{parts.port or ''}"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _said(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
