"""Engines, sessions and schema upgrades; nothing is created at import time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).parent / "migrations"
_upgrade_lock = threading.Lock()


def make_engine(url: str, **kwargs: object) -> sa.Engine:
    """An engine for any SQLAlchemy URL, tuned for SQLite when it is one."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # no pre-ping: a round trip per checkout is the price of one query; a connection
    # broken by a server restart fails once, is invalidated, and the actor retries
    options: dict[str, object] = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 3600}
    options.update(kwargs)
    return sa.create_engine(url, **options)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # SQLAlchemy then issues BEGIN itself: see _sqlite_begin
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]


def _sqlite_begin(connection: sa.Connection) -> None:
    # take the write lock at the start, so a check-then-write is never overtaken
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: sa.Engine) -> bool:
    """True on PostgreSQL, where row locks and SKIP LOCKED exist."""
    return engine.dialect.name == "postgresql"


@contextmanager
def transaction(engine: sa.Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


def alembic_config(engine: sa.Engine) -> Config:
    """An Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def _current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision; cheap when it already is."""
    config = alembic_config(engine)
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        if _current_revision(connection) == head:
            return
    with _upgrade_lock, engine.begin() as connection:
        if is_postgres(engine):
            # several processes may start at once: one migrates, the others wait
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(7146001)"))
        if _current_revision(connection) == head:
            return
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
