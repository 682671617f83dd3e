"""Shared fixtures: settings on a temporary folder, and real services that skip locally
but fail under CI=true."""

from __future__ import annotations

import email
import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach.app import App, build_app
from outreach.db import transaction
from outreach.models import Prospect
from outreach.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "OUTREACH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("OUTREACH_TEST_REDIS", "redis://127.0.0.1:6379/15")


def require(service: str, check: Callable[[], object]) -> None:
    """Skip when a service is missing, except under CI=true, where that is a failure."""
    try:
        check()
    except Exception as exc:
        message = f"{service} is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working folder holding copies of the example sequences and templates."""
    shutil.copytree(ROOT / "sequences", tmp_path / "sequences")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path


def make_settings(workdir: Path, **overrides: object) -> Settings:
    """Settings pointing every path into `workdir`."""
    values: dict[str, object] = {
        "database_url": f"sqlite:///{workdir / 'outreach.db'}",
        "outbox_dir": workdir / "outbox",
        "sequences_dir": workdir / "sequences",
        "templates_dir": workdir / "templates",
        "secret_key": "test-secret",
        "base_url": "https://outreach.example",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(workdir: Path) -> Settings:
    """Settings on SQLite and the outbox in a temporary folder."""
    return make_settings(workdir)


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    """An App on those settings, schema upgraded."""
    application = build_app(settings)
    yield application
    application.close()


MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm


def add_prospect(app: App, address: str, **values: str) -> None:
    """A prospect row as an import leaves it, created Monday 2 March 2026 at 09:00 UTC."""
    with transaction(app.engine) as session:
        session.add(
            Prospect(email=address, created_at=MONDAY_9, updated_at=MONDAY_9, fields={}, **values)
        )


def outbox(app: App) -> list[EmailMessage]:
    """The messages the outbox mailer wrote, oldest file name first."""
    folder = app.settings.outbox_dir
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]  # type: ignore[misc]


def run_ticks(app: App, *times: datetime, threads: int = 2) -> None:
    """Scheduler passes at simulated times, each waiting for the in-process worker."""
    from outreach.runtime import start

    runtime = start(app, threads=threads)
    try:
        for when in times:
            runtime.tick(when, simulated=True)
    finally:
        runtime.close()


def write_sequence(workdir: Path, sequence_id: str, body: str) -> Path:
    """Write a sequence file; the body is dedented YAML."""
    path = workdir / "sequences" / f"{sequence_id}.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def write_template(workdir: Path, name: str, body: str, subject: str | None = "Hello") -> Path:
    """Write a template file with front matter holding the subject."""
    head = f"---\nsubject: {subject!r}\n---\n" if subject is not None else ""
    path = workdir / "templates" / f"{name}.j2"
    path.write_text(head + textwrap.dedent(body).lstrip())
    return path


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL on an emptied schema."""
    engine = sa.create_engine(PG_ADMIN_URL)

    def reset() -> None:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))

    require("PostgreSQL", reset)
    yield PG_ADMIN_URL
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    """A Redis URL on an emptied database."""
    import redis

    def flush() -> None:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()

    require("Redis", flush)
    return REDIS_URL


def write_blast(workdir: Path, steps: int = 1) -> str:
    """A sequence of `steps` emails a day apart, open around the clock in UTC: "blast"."""
    write_template(workdir, "hello", "Hi {{ prospect.email }}\n")
    body = ["  - email: {template: hello}"]
    for _ in range(steps - 1):
        body += ["  - wait: 1 day", "  - email: {template: hello}"]
    write_sequence(
        workdir,
        "blast",
        'name: Blast\nsender: {from: "Ann <ann@acme.example>", address: "Acme AB"}\n'
        'schedule: {timezone: UTC, window: "00:00-24:00",'
        " days: [mon, tue, wed, thu, fri, sat, sun]}\nsteps:\n" + "\n".join(body) + "\n",
    )
    return "blast"
