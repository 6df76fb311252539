"""The `ipt-fhir` command: serve, db upgrade|downgrade|current|reindex (search indexes, IPT progress)."""
from __future__ import annotations

import sys

import typer

from ipt_fhir.commands.errors import require_existing_sqlite
from ipt_fhir.settings import get_settings
from ipt_fhir.store import migrate

class _Command(typer.Typer):
    """The command, with an error of the environment (commands/errors.py) told in one line, exit code 1."""

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        from ipt_fhir.commands.errors import environment_error

        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - what is no environment error is raised again below
            message = environment_error(exc)
            if message is None:
                raise
            typer.echo(f"ipt-fhir: {message}", err=True)
            sys.exit(1)


app = _Command(help="ipt-fhir: FHIR R4 server for Interpersonal Psychotherapy", no_args_is_help=True)
db_app = typer.Typer(help="Database schema and index maintenance", no_args_is_help=True)
app.add_typer(db_app, name="db")

from ipt_fhir.commands.demo import demo_data  # noqa: E402

app.command("demo-data")(demo_data)
from ipt_fhir.commands import import_export  # noqa: E402

app.command("import")(import_export.import_command)
app.command("export")(import_export.export_command)


@app.command()
def serve(
    host: str = typer.Option(None, help="Interface to bind (default IPT_FHIR_HOST or 127.0.0.1)"),
    port: int = typer.Option(None, help="Port (default IPT_FHIR_PORT or 8080)"),
    workers: int = typer.Option(None, help="Worker processes (default IPT_FHIR_WORKERS or 1)"),
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
    workers = workers or settings.workers
    if settings.is_sqlite:
        migrate.upgrade(settings.database_url)
    elif not migrate.is_current(settings.database_url):
        now = migrate.current_revision(settings.database_url)
        typer.echo(
            f"The database {f'schema is at {now!r}' if now else 'has no schema yet'}, this server needs "
            f"{migrate.head_revision(settings.database_url)!r}. Run `ipt-fhir db upgrade` first.", err=True)
        raise typer.Exit(code=2)
    typer.echo(f"ipt-fhir serving FHIR R4 at http://{host}:{port}/fhir")
    from ipt_fhir.observability import SERVER_OPTIONS, log_config, prepare_multiprocess_metrics

    if workers > 1:
        prepare_multiprocess_metrics()  # one /metrics view over all worker processes
    # SIGTERM: stop accepting, let in-flight requests finish (shutdown_timeout), close the pool; then exit 0
    # with --workers 2 or more, or by the signal itself (status 143) with one worker, as uvicorn does.
    uvicorn.run("ipt_fhir.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_config=log_config(settings.log_level, settings.log_format), log_level=settings.log_level,
                timeout_graceful_shutdown=settings.shutdown_timeout, **SERVER_OPTIONS)


@app.command()
def openapi(output: str = typer.Option(None, help="Write to this file instead of standard output")) -> None:
    """Print the OpenAPI document (as served at /openapi.json). Regenerate the committed copy with
    `ipt-fhir openapi --output openapi/openapi.json`."""
    from ipt_fhir.api.openapi import export_text

    text = export_text()
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


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
    require_existing_sqlite(url)
    now, head = migrate.current_revision(url), migrate.head_revision(url)
    typer.echo(f"{now or 'no schema'} ({'current' if now == head else f'out of date, newest is {head}'})")
    if now != head:
        sys.exit(1)


@db_app.command()
def reindex(
    search: bool = typer.Option(True, help="Rebuild the search index rows"),
    ipt_progress: bool = typer.Option(True, help="Rebuild the IPT progress read model ($ipt-progress rows)"),
) -> None:
    """Rebuild derived data from the stored resources: every search index row (after a definitions
    change) and every IPT progress row (rows an older version built may be wrong)."""
    from rich.progress import Progress

    from ipt_fhir.services.ipt.progress_rebuild import rebuild_progress_rows
    from ipt_fhir.store.database import Database
    from ipt_fhir.store.search_index import reindex_all

    require_existing_sqlite(get_settings().database_url)
    db = Database(get_settings().database_url)
    try:
        with Progress() as bar:
            if search:
                task = bar.add_task("reindexing", total=None)
                count = reindex_all(db, progress=lambda n: bar.update(task, completed=n))
                bar.console.print(f"reindexed {count} resources")
            if ipt_progress:
                task = bar.add_task("rebuilding IPT progress", total=None)
                plans = rebuild_progress_rows(db, progress=lambda n: bar.update(task, completed=n))
                bar.console.print(f"rebuilt the progress of {plans} IPT care plans")
    finally:
        db.dispose()


if __name__ == "__main__":
    app()
