"""The `ipt-fhir` command: serve, db upgrade|downgrade|current|reindex."""
from __future__ import annotations

import sys

import typer

from ipt_fhir.settings import get_settings
from ipt_fhir.store import migrate

app = typer.Typer(help="ipt-fhir: FHIR R4 server for Interpersonal Psychotherapy", no_args_is_help=True)
db_app = typer.Typer(help="Database schema and index maintenance", no_args_is_help=True)
app.add_typer(db_app, name="db")

from ipt_fhir.commands.demo import demo_data  # noqa: E402

app.command("demo-data")(demo_data)


@app.command()
def serve(
    host: str = typer.Option(None, help="Interface to bind (default IPT_FHIR_HOST or 127.0.0.1)"),
    port: int = typer.Option(None, help="Port (default IPT_FHIR_PORT or 8080)"),
    workers: int = typer.Option(1, help="Worker processes"),
) -> None:
    """Run the server. The embedded SQLite database is migrated to the current schema by itself;
    PostgreSQL must be migrated with `ipt-fhir db upgrade` first."""
    import uvicorn

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    from ipt_fhir.security.middleware import InsecureConfiguration, check_startup

    try:  # auth off only on the embedded SQLite database bound to localhost (README "Security")
        check_startup(settings, host)
    except InsecureConfiguration as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if settings.is_sqlite:
        migrate.upgrade(settings.database_url)
    elif not migrate.is_current(settings.database_url):
        typer.echo(
            f"The database schema is at {migrate.current_revision(settings.database_url)!r}, this server needs "
            f"{migrate.head_revision(settings.database_url)!r}. Run `ipt-fhir db upgrade` first.", err=True)
        raise typer.Exit(code=2)
    typer.echo(f"ipt-fhir serving FHIR R4 at http://{host}:{port}/fhir")
    uvicorn.run("ipt_fhir.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", timeout_graceful_shutdown=10)


@db_app.command()
def upgrade(revision: str = typer.Argument("head")) -> None:
    """Migrate the schema up (default: to the newest revision)."""
    migrate.upgrade(get_settings().database_url, revision)
    typer.echo(f"schema at {migrate.current_revision(get_settings().database_url)}")


@db_app.command()
def downgrade(revision: str = typer.Argument("-1", help="Target revision, '-1' for one step, 'base' for empty")) -> None:
    """Migrate the schema down."""
    migrate.downgrade(get_settings().database_url, revision)
    typer.echo(f"schema at {migrate.current_revision(get_settings().database_url)}")


@db_app.command()
def current() -> None:
    """Print the schema revision of the database and whether it is the newest."""
    url = get_settings().database_url
    now, head = migrate.current_revision(url), migrate.head_revision(url)
    typer.echo(f"{now} ({'current' if now == head else f'out of date, newest is {head}'})")
    if now != head:
        sys.exit(1)


if __name__ == "__main__":
    app()
