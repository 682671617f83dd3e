"""`outreach doctor`: every check, and that it changes nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from outreach import db, doctor
from outreach.app import App
from outreach.cli import cli
from outreach.settings import Settings
from tests import conftest_imap
from tests.conftest import make_settings, write_sequence
from tests.conftest_imap import ImapBox
from tests.conftest_smtp import SmtpSink, free_port, self_signed_tls

dovecot = conftest_imap.dovecot  # the shared fixtures, made visible to this module
imap_box = conftest_imap.imap_box


def production(workdir: Path, **overrides: object) -> Settings:
    """Test settings with the secrets a production setup has."""
    values: dict[str, object] = {"api_tokens": "tok-123", "inbound_secret": "shh"}
    values.update(overrides)
    return make_settings(workdir, **values)


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.check: c for c in checks}


def test_sqlite_app_is_all_ok(app: App, workdir: Path) -> None:
    checks = doctor.run(production(workdir))
    assert [c for c in checks if c.status != "ok"] == []
    assert not doctor.failed(checks)
    names = by_name(checks)
    assert {"settings", "validate", "database", "broker", "smtp", "dkim", "imap"} <= set(names)
    assert "outbox" in names["smtp"].message
    assert "in-process" in names["broker"].message


def test_closed_smtp_port_is_an_error_naming_host_and_port(app: App, workdir: Path) -> None:
    port = free_port()
    checks = doctor.run(production(workdir, smtp_url=f"smtp://127.0.0.1:{port}"))
    smtp = by_name(checks)["smtp"]
    assert smtp.status == "error"
    assert f"127.0.0.1:{port}" in smtp.message
    assert smtp.hint
    assert doctor.failed(checks)


def test_smtp_session_is_checked_without_sending(app: App, workdir: Path) -> None:
    with SmtpSink() as sink:
        smtp = by_name(doctor.run(production(workdir, smtp_url=sink.url())))["smtp"]
        assert sink.messages == []
    # the sink offers no STARTTLS: reachable, but plain text is worth a warning
    assert smtp.status == "warning"
    assert f"127.0.0.1:{sink.port}" in smtp.message


def test_smtp_login_and_starttls(app: App, workdir: Path) -> None:
    with SmtpSink(credentials=("ann", "right"), starttls=self_signed_tls()) as sink:
        good = sink.url(userinfo="ann:right", query="verify=no")
        ok = by_name(doctor.run(production(workdir, smtp_url=good)))["smtp"]
        bad = sink.url(userinfo="ann:wrong", query="verify=no")
        refused = by_name(doctor.run(production(workdir, smtp_url=bad)))["smtp"]
        assert sink.messages == []
    assert ok.status == "ok", ok
    assert "TLS" in ok.message and "logged in as ann" in ok.message
    assert refused.status == "error"
    assert "refused the login" in refused.message


def test_imap_login_is_checked(app: App, workdir: Path, imap_box: ImapBox) -> None:
    ok = by_name(doctor.run(production(workdir, imap_url=imap_box.url())))["imap"]
    assert ok.status == "ok", ok
    wrong = imap_box.url(password="wrong")
    refused = by_name(doctor.run(production(workdir, imap_url=wrong)))["imap"]
    assert refused.status == "error"


def test_missing_dkim_key_file_is_an_error(app: App, workdir: Path) -> None:
    settings = production(workdir, dkim_key_file=workdir / "nope.pem", dkim_selector="s1")
    dkim = by_name(doctor.run(settings))["dkim"]
    assert dkim.status == "error"
    assert "nope.pem" in dkim.message


def test_dkim_needs_both_settings_and_an_rsa_pem_key(app: App, workdir: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = workdir / "dkim.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ok = by_name(doctor.run(production(workdir, dkim_key_file=pem, dkim_selector="s1")))
    assert ok["dkim"].status == "ok"
    assert "2048-bit" in ok["dkim"].message
    half = by_name(doctor.run(production(workdir, dkim_key_file=pem)))
    assert half["dkim"].status == "error"
    assert "OUTREACH_DKIM_SELECTOR" in half["dkim"].message
    junk = workdir / "junk.pem"
    junk.write_text("not a key\n")
    bad = by_name(doctor.run(production(workdir, dkim_key_file=junk, dkim_selector="s1")))
    assert bad["dkim"].status == "error"


def test_unreadable_sequence_is_an_error_with_path_and_line(app: App, workdir: Path) -> None:
    path = write_sequence(workdir, "broken", "name: Broken\nsteps: [\n")
    validate = by_name(doctor.run(production(workdir)))["validate"]
    assert validate.status == "error"
    assert f"{path}:3: YAML syntax error" in validate.message


def test_missing_folder_is_an_error(workdir: Path) -> None:
    settings = production(workdir, sequences_dir=workdir / "missing")
    checks = by_name(doctor.run(settings))
    assert checks["sequences folder"].status == "error"
    assert "validate" not in checks


def test_pending_migrations_are_counted_and_not_applied(workdir: Path) -> None:
    path = workdir / "fresh.db"
    sqlite3.connect(path).close()  # an empty database file
    url = f"sqlite:///{path}"
    database = by_name(doctor.run(production(workdir, database_url=url)))["database"]
    total = doctor._pending(None)
    assert total >= 1
    assert database.status == "warning"
    assert f"{total} migrations pending" in database.message
    engine = sa.create_engine(url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_missing_database_file_is_not_created(workdir: Path) -> None:
    path = workdir / "later.db"
    settings = production(workdir, database_url=f"sqlite:///{path}")
    database = by_name(doctor.run(settings))["database"]
    assert database.status == "warning"
    assert "migrations pending" in database.message
    assert not path.exists()


def test_an_older_schema_counts_the_remaining_migrations(workdir: Path) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{workdir / 'old.db'}"
    engine = db.make_engine(url)
    try:
        config = db.alembic_config(engine)
        revisions = list(ScriptDirectory.from_config(config).walk_revisions())
        if len(revisions) < 2:
            pytest.skip("only one migration")
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revisions[-1].revision)  # the first one only
    finally:
        engine.dispose()
    database = by_name(doctor.run(production(workdir, database_url=url)))["database"]
    assert database.status == "warning"
    assert f"{len(revisions) - 1} migrations pending" in database.message


def test_unreachable_database_is_an_error(workdir: Path) -> None:
    port = free_port()
    url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/nothing"
    database = by_name(doctor.run(production(workdir, database_url=url)))["database"]
    assert database.status == "error"
    assert f"127.0.0.1:{port}" in database.message


def test_unreachable_broker_is_an_error(app: App, workdir: Path) -> None:
    port = free_port()
    settings = production(workdir, broker_url=f"redis://127.0.0.1:{port}/0")
    broker = by_name(doctor.run(settings))["broker"]
    assert broker.status == "error"
    assert f"127.0.0.1:{port}" in broker.message


def test_http_base_url_and_missing_secrets_are_warnings(app: App, workdir: Path) -> None:
    settings = make_settings(workdir, base_url="http://localhost:8000")
    checks = by_name(doctor.run(settings))
    assert checks["base url"].status == "warning"
    assert "RFC 8058" in checks["base url"].message
    assert checks["api tokens"].status == "warning"
    assert checks["inbound secret"].status == "warning"
    assert not doctor.failed(list(checks.values()))


def test_bad_settings_are_reported_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_BATCH_SIZE", "lots")
    [check] = doctor.run()
    assert check.status == "error"
    assert "OUTREACH_BATCH_SIZE" in check.message
    assert "lots" in check.message


def test_bad_render_limits_are_a_settings_error(workdir: Path) -> None:
    [check] = doctor.run(production(workdir, render_limits="lots"))
    assert check.status == "error"
    assert "OUTREACH_RENDER_LIMITS" in check.message


def test_cli_json_and_exit_code(app: App, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    settings = app.settings
    for name, value in {
        "DATABASE_URL": settings.database_url,
        "OUTBOX_DIR": str(settings.outbox_dir),
        "SEQUENCES_DIR": str(settings.sequences_dir),
        "TEMPLATES_DIR": str(settings.templates_dir),
        "BASE_URL": "https://outreach.example",
        "API_TOKENS": "tok",
        "INBOUND_SECRET": "shh",
    }.items():
        monkeypatch.setenv(f"OUTREACH_{name}", value)
    runner = CliRunner()
    result = runner.invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert all(set(row) == {"check", "status", "message", "hint"} for row in rows)
    assert {row["status"] for row in rows} == {"ok"}
    monkeypatch.setenv("OUTREACH_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    result = runner.invoke(cli, ["doctor"])
    assert result.exit_code == 1
    assert "error" in result.stdout
