"""Settings, read once at the edge from OUTREACH_* variables and a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting has a default that works on one machine with nothing but Python."""

    model_config = SettingsConfigDict(env_prefix="OUTREACH_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///outreach.db"
    broker_url: str | None = None
    smtp_url: str | None = None
    smtp_timeout: float = 30.0
    outbox_dir: Path = Path("outbox")
    sequences_dir: Path = Path("sequences")
    templates_dir: Path = Path("templates")
    secret_key: str | None = None
    base_url: str = "http://localhost:8000"
    render_limits: str = "100kB,2s"
    dkim_key_file: Path | None = None
    dkim_selector: str | None = None
    # how long a claimed step may stay in flight before the scheduler dispatches it again
    dispatch_lease_seconds: int = 600
    # a send left in 'sending' longer than this was cut off, not in flight
    send_inflight_seconds: int = 300
    # first delay before a transient SMTP refusal is retried; it doubles on each retry
    retry_backoff_ms: int = 10_000
    # after a transient refusal the scheduler leaves the step to Dramatiq's retries this long
    retry_lease_seconds: int = 3600
    # a step still refused this long after its first attempt fails for good
    retry_give_up_hours: float = 24.0
    # a step whose worker died (or raised an unexpected error) this many times in a row
    # is parked: its enrollment is paused with the reason, for a person to look at
    max_crashes: int = 5
    tick_seconds: float = 5.0
    batch_size: int = 500
    # due steps per worker message: fewer broker round trips and database transactions
    send_batch_size: int = 50
    worker_threads: int = 8
    worker_processes: int = 2
    imap_url: str | None = None
    api_tokens: str | None = None
    # the shared secret of the inbound-mail webhook (POST /api/inbound)
    inbound_secret: str | None = None
    # the largest message the webhook takes; larger bodies get 413
    inbound_max_bytes: int = 25 * 1024 * 1024
    # a click this soon after the email went out is a link scanner's, not a person's
    scanner_seconds: float = 60.0
