"""What the `ipt-fhir` commands answer when the environment, not the code, is wrong: a database URL that
names no usable database, a server that cannot be reached, a path that cannot be written. One line on
standard error and exit code 1, instead of a traceback a clinic's IT has to read through. Anything else
is a defect and keeps its traceback."""
from __future__ import annotations

from pathlib import Path

import typer


def environment_error(exc: BaseException) -> str | None:
    """The one-line message for an error of the environment; None for anything else."""
    import httpx
    import sqlalchemy.exc
    from alembic.util.exc import CommandError

    if isinstance(exc, CommandError):  # `db upgrade|downgrade REV` naming no revision of the migrations
        return f"the schema cannot be moved: {exc}"
    if isinstance(exc, (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError)):
        return f"the database URL cannot be used: {exc}"
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        return f"the database cannot be used: {str(exc.orig or exc).splitlines()[0]}"
    if isinstance(exc, httpx.HTTPError):
        where = f" ({exc.request.url})" if _has_request(exc) else ""
        return f"the server cannot be reached{where}: {exc}"
    if isinstance(exc, OSError):
        return str(exc)
    return None


def _has_request(exc: BaseException) -> bool:
    try:
        return getattr(exc, "request", None) is not None
    except RuntimeError:  # httpx raises when an error has no request
        return False


def require_existing_sqlite(url: str) -> None:
    """Commands that read a database must not create an empty one for a mistyped path (SQLite does, on
    connecting): they stop, naming the path."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = parsed.database
        if not Path(path).exists():
            typer.echo(f"no database at {path} (the database URL is {url})", err=True)
            raise typer.Exit(1)
