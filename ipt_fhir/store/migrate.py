"""Schema migrations (Alembic) driven from code: upgrade, downgrade, and the check `serve` makes."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine


def _script_location() -> str:
    # A checkout (or a git worktree of one) keeps its migrations at its top, beside the package: they are
    # this code's own, even when an editable install maps ipt_fhir.migrations to another checkout's folder.
    # Installed from a distribution, they ship as the package ipt_fhir.migrations.
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "migrations" / "env.py").is_file() and (checkout / "pyproject.toml").is_file():
        return str(checkout / "migrations")
    import ipt_fhir.migrations as installed  # type: ignore[import-not-found]

    return str(Path(installed.__file__).parent)


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def current_revision(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def is_current(database_url: str) -> bool:
    return current_revision(database_url) == head_revision(database_url)
