"""The application context: settings, database, mailer and caches, built in one function."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from outreach import db, tokens
from outreach.errors import SequenceInvalid, UnknownSequence
from outreach.mailers import make_mailer
from outreach.mailers.base import Mailer
from outreach.message import DkimSigner
from outreach.sequence import Sequence, load_sequence
from outreach.settings import Settings
from outreach.template import Renderer, parse_limits
from outreach.versions import VersionCache


@dataclass
class App:
    """Everything a command, actor or route needs; one per process."""

    settings: Settings
    engine: sa.Engine
    mailer: Mailer
    renderer: Renderer
    dkim: DkimSigner | None = None
    # the key that signs unsubscribe and tracking tokens
    secret: str = ""
    versions: VersionCache = field(default_factory=VersionCache)

    def sequence(self, sequence_id: str) -> Sequence:
        """The current, validated definition of a sequence from the sequences folder."""
        path = self.settings.sequences_dir / f"{sequence_id}.yaml"
        if not path.exists():
            path = path.with_suffix(".yml")
        if not path.exists():
            raise UnknownSequence(f"no sequence {sequence_id!r} in {self.settings.sequences_dir}")
        return load_sequence(path, self.settings.templates_dir)

    def close(self) -> None:
        """Release connections."""
        self.mailer.close()
        self.engine.dispose()


def build_app(settings: Settings | None = None, *, migrate: bool = True) -> App:
    """Create the engine, upgrade the schema and pick the mailer from settings."""
    settings = settings or Settings()
    engine = db.make_engine(settings.database_url)
    if migrate:
        db.upgrade(engine)
    dkim = None
    if settings.dkim_key_file and settings.dkim_selector:
        dkim = DkimSigner.from_file(settings.dkim_key_file, settings.dkim_selector)
    return App(
        settings=settings,
        engine=engine,
        mailer=make_mailer(settings.smtp_url, settings.outbox_dir, settings.smtp_timeout),
        renderer=Renderer(parse_limits(settings.render_limits)),
        dkim=dkim,
        secret=tokens.secret_key(engine, settings.secret_key) if migrate else "",
    )


__all__ = ["App", "SequenceInvalid", "build_app"]
