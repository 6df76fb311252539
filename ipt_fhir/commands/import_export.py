"""`ipt-fhir import PATH...` and `ipt-fhir export OUTDIR`.

import: transaction/batch Bundles (.json, .json.gz), NDJSON (.ndjson, .ndjson.gz) and folders of them,
loaded straight into a database (--database-url, default IPT_FHIR_DATABASE_URL) or sent to a running
server (--url: Bundles POSTed to the base, NDJSON through $import). Progress bar with resources/s and
ETA, a summary table by type, a per-file error report, and exit code 1 when anything failed.
export: Bulk Data export of the database (or of a server with --url) into NDJSON files.
"""
from __future__ import annotations

import gzip
import json
import re
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import require_existing_sqlite

if TYPE_CHECKING:  # imported where used: the CLI starts without the server's modules
    from ipt_fhir.fhir.outcome import FHIRError

console = Console(stderr=True)


def _is_ndjson(p: Path) -> bool:
    return p.name.endswith((".ndjson", ".ndjson.gz"))


def _is_json(p: Path) -> bool:
    return p.name.endswith((".json", ".json.gz"))


def _expand(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    bundles, ndjson = [], []
    for path in paths:
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            if _is_ndjson(f):
                ndjson.append(f)
            elif _is_json(f):
                bundles.append(f)
            elif not path.is_dir():
                raise typer.BadParameter(f"{f}: not .json, .json.gz, .ndjson or .ndjson.gz")
    return bundles, ndjson


# What reading a file can fail with: a truncated or corrupt .gz (EOFError, zlib.error), a file gone.
UNREADABLE = (OSError, EOFError, zlib.error)


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _entries_of(body: bytes) -> list:
    """A Bundle's entries; none for what is not a Bundle's JSON (the import reports that)."""
    try:
        bundle = json.loads(body)
    except ValueError:
        return []
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    return entries if isinstance(entries, list) else []


def _count_entries(path: Path) -> int:
    """For the progress bar only: a Bundle that cannot be read or parsed counts 0, and is reported by
    the import itself (with every other file still imported)."""
    try:
        return len(_entries_of(_read(path)))
    except UNREADABLE:
        return 0


def _count_lines(paths: list[Path]) -> int:
    """For the progress bar only: the lines up to where a file stops being readable."""
    total = 0
    for p in paths:
        opener = gzip.open if p.name.endswith(".gz") else open
        try:
            with opener(p, "rb") as f:
                for line in f:
                    total += bool(line.strip())
        except UNREADABLE:
            pass
    return total


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]} resources/s"), TimeRemainingColumn(), console=console)


def import_command(
    paths: list[Path] = typer.Argument(..., exists=True, help="Bundle/NDJSON files (.gz too) and folders"),
    url: Optional[str] = typer.Option(None, "--url", help="FHIR base of a running server to send to"),
    database_url: Optional[str] = typer.Option(None, "--database-url", help="Load directly into this database "
                                               "(default IPT_FHIR_DATABASE_URL)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate only; write nothing"),
    batch: int = typer.Option(1000, "--batch", min=1, help="NDJSON resources per committed batch"),
    token: Optional[str] = typer.Option(None, "--token", envvar="IPT_FHIR_TOKEN", help="Bearer token for --url"),
) -> None:
    """Import Bundles and NDJSON; exit code 1 if any resource failed."""
    bundles, ndjson = _expand(paths)
    if not bundles and not ndjson:
        console.print("nothing to import")
        raise typer.Exit(1)
    summary: dict[str, Counter] = {}
    errors: dict[str, list[str]] = {}
    started = time.perf_counter()
    total = sum(_count_entries(b) for b in bundles) + _count_lines(ndjson)
    with _progress() as progress:
        task = progress.add_task("importing", total=total, rate="-")

        def advance(n: int) -> None:
            progress.advance(task, n)
            done = progress.tasks[0].completed
            progress.update(task, rate=f"{done / max(time.perf_counter() - started, 1e-6):,.0f}")

        if url:
            _import_remote(url.rstrip("/"), bundles, ndjson, dry_run, token, summary, errors, advance)
        else:
            _import_local(database_url, bundles, ndjson, dry_run, batch, summary, errors, advance)
    _print_summary(summary, time.perf_counter() - started, dry_run)
    if errors:
        console.print("[bold red]errors[/]")
        for file, messages in errors.items():
            console.print(f"[bold]{file}[/] ({len(messages)})")
            for m in messages[:50]:
                console.print(f"  {m}")
            if len(messages) > 50:
                console.print(f"  … {len(messages) - 50} more")
        raise typer.Exit(1)


def _entry_failure(index: int, exc: FHIRError) -> str:
    """`entry i: status: diagnostics`, the entry named once: an error of the Bundle's own elements carries
    its `Bundle.entry[i]: ` location in its diagnostics already (bundle_processing.entry_error)."""
    prefix = f"Bundle.entry[{index}]: "
    return f"entry {index}: {exc.status}: " + "; ".join(i.diagnostics.removeprefix(prefix) for i in exc.issues)


def _import_local(database_url, bundles, ndjson, dry_run, batch, summary, errors, advance) -> None:  # noqa: ANN001
    from ipt_fhir.fhir.jsonio import parse_json
    from ipt_fhir.fhir.outcome import FHIRError
    from ipt_fhir.services.bulk_import import Importer, Source
    from ipt_fhir.services.bundle_processing import BundleService
    from ipt_fhir.services.resources import ResourceService
    from ipt_fhir.settings import get_settings
    from ipt_fhir.store import migrate
    from ipt_fhir.store.database import Database

    from ipt_fhir.services import ipt as ipt_layer
    from ipt_fhir.services.ipt.publish import publish

    url = database_url or get_settings().database_url
    if url.startswith("sqlite"):
        migrate.upgrade(url)
    db = Database(url)
    try:
        # As in the server: the IPT profiles, rules and read model apply, and the server's own conformance
        # resources are stored, so that no line can take their ids or canonical URLs.
        registry = ipt_layer.install(get_settings().canonical_base)
        if not dry_run:
            publish(db, registry)
        service = BundleService(db, ResourceService(db))
        for path in bundles:
            entries = []
            try:
                try:
                    bundle = parse_json(_read(path))
                except UNREADABLE as exc:
                    raise FHIRError.of(400, "structure", f"the file cannot be read: {exc}") from None
                entries = bundle.get("entry") or [] if isinstance(bundle, dict) else []
                if isinstance(bundle, dict) and bundle.get("resourceType") != "Bundle":
                    raise FHIRError.of(400, "structure", "not a Bundle (single resources go in NDJSON)")
                if dry_run:  # the checks of a real import, entry by entry, without its writes
                    for i, exc in service.entry_errors(bundle):
                        errors.setdefault(path.name, []).append(_entry_failure(i, exc))
                else:
                    service.process(bundle, base_url="", prefer="minimal", strict_search=False)
                for e in entries:
                    c = summary.setdefault((e.get("resource") or {}).get("resourceType", "?"), Counter())
                    c["ok"] += 1
                    c["created" if not dry_run and e.get("request", {}).get("method") == "POST" else "updated"] += 0 if dry_run else 1
            except FHIRError as exc:
                errors.setdefault(path.name, []).append(f"{exc.status}: {'; '.join(i.diagnostics for i in exc.issues)}")
            advance(len(entries))
        if ndjson:
            last = [0]

            def progress(report, _total) -> None:  # noqa: ANN001
                advance(report.lines - last[0])
                last[0] = report.lines

            try:
                report = Importer(db, batch=batch, dry_run=dry_run, progress=progress).run(
                    [Source.path(p) for p in ndjson])
            except FHIRError as exc:  # a file that cannot be read (its name is in the message): the run stops
                errors.setdefault("NDJSON", []).append("; ".join(i.diagnostics for i in exc.issues))
                return
            for rtype, c in report.by_type().items():
                s = summary.setdefault(rtype, Counter())
                s["ok"] += c["created"] + c["updated"] + c["unchanged"]
                s["created"] += c["created"]
                s["updated"] += c["updated"]
                s["unchanged"] += c["unchanged"]
                s["failed"] += c["failed"]
            for e in report.errors:
                errors.setdefault(e.file, []).append(
                    f"line {e.line}: {e.status} {'; '.join(i.diagnostics for i in e.issues)}")
    finally:
        db.dispose()


def _import_remote(base, bundles, ndjson, dry_run, token, summary, errors, advance) -> None:  # noqa: ANN001
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=600, headers=headers) as http:
        for path in bundles:
            try:
                body = _read(path)
            except UNREADABLE as exc:
                errors.setdefault(path.name, []).append(f"the file cannot be read: {exc}")
                continue
            entries = _entries_of(body)
            if dry_run:
                errors.setdefault(path.name, []).append("--dry-run with --url is not supported for Bundles; skipped")
                advance(len(entries))
                continue
            r = http.post(base, content=body, headers={"content-type": "application/fhir+json",
                                                       "prefer": "return=minimal"})
            if r.status_code == 200:
                for e in entries:
                    summary.setdefault((e.get("resource") or {}).get("resourceType", "?"), Counter())["ok"] += 1
            else:
                errors.setdefault(path.name, []).append(f"{r.status_code}: {_diagnostics(r)}")
            advance(len(entries))
        for path in ndjson:
            if dry_run:
                errors.setdefault(path.name, []).append("--dry-run with --url is not supported for NDJSON; skipped")
                advance(_count_lines([path]))  # only then: an import counts its parts as it sends them
                continue
            try:
                for offset, count, body in _ndjson_parts(path):
                    _import_remote_part(http, base, path.name, offset, body, summary, errors)
                    advance(count)
            except UNREADABLE as exc:
                errors.setdefault(path.name, []).append(f"the file cannot be read: {exc}")


# NDJSON goes to a server in parts of whole lines of at most this size: a request body has a limit there
# (IPT_FHIR_MAX_BODY_BYTES, 16 MiB by default), a file none.
REMOTE_PART_BYTES = 8 * 1024 * 1024


def _ndjson_parts(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(lines before the part, its non-blank lines, its bytes): whole lines, each part under
    REMOTE_PART_BYTES unless one line alone is larger."""
    opener = gzip.open if path.name.endswith(".gz") else open
    part: list[bytes] = []
    size = offset = count = number = 0
    with opener(path, "rb") as f:
        for line in f:
            number += 1
            if part and size + len(line) > REMOTE_PART_BYTES:
                yield offset, count, b"".join(part)
                part, size, offset, count = [], 0, number - 1, 0
            part.append(line if line.endswith(b"\n") else line + b"\n")
            size += len(line)
            count += bool(line.strip())
    if part:
        yield offset, count, b"".join(part)


def _import_remote_part(http, base: str, name: str, offset: int, body: bytes, summary, errors) -> None:  # noqa: ANN001
    """One $import of NDJSON lines of file `name` that start after line `offset`; its line errors are
    reported against that file and its own line numbers."""
    r = http.post(f"{base}/$import", content=body, headers={"content-type": "application/fhir+ndjson"})
    if r.status_code != 202:
        errors.setdefault(name, []).append(f"{r.status_code}: {_diagnostics(r)}")
        return
    status = r.headers["content-location"]
    while (s := http.get(status)).status_code == 202:
        time.sleep(0.5)
    if s.status_code != 200:
        errors.setdefault(name, []).append(f"{s.status_code}: {_diagnostics(s)}")
        return
    result = s.json()
    for o in result["output"]:
        c = summary.setdefault(o["type"], Counter())
        for k in ("created", "updated", "unchanged", "failed"):
            c[k] += o.get(k, 0)
        c["ok"] += o["count"]
    for e in result.get("error", []):
        for text in http.get(e["url"]).text.splitlines():
            errors.setdefault(name, []).append(_line_error(json.loads(text), offset))


def _line_error(outcome: dict, offset: int) -> str:
    """`line N: diagnostics` of an import error OperationOutcome, N in the user's file (the server names
    the upload it stored and the line within this part)."""
    source = next((x for x in outcome.get("extension", []) if x.get("url", "").endswith("bulk-import-source")), {})
    line = next((x.get("valueInteger") for x in source.get("extension", []) if x.get("url") == "line"), None)
    texts = [i.get("diagnostics", "") for i in outcome.get("issue", [])]
    if line is None:
        return "; ".join(texts)
    return f"line {offset + line}: " + "; ".join(re.sub(r"^.*? line \d+: ", "", t, count=1) for t in texts)


def _diagnostics(r) -> str:  # noqa: ANN001
    try:
        return "; ".join(i.get("diagnostics", "") for i in r.json().get("issue", []))[:2000]
    except ValueError:
        return r.text[:500]


def _print_summary(summary: dict[str, Counter], seconds: float, dry_run: bool) -> None:
    table = Table(title="validated (dry run)" if dry_run else "imported")
    for col in ("type", "ok", "created", "updated", "unchanged", "failed"):
        table.add_column(col, justify="left" if col == "type" else "right")
    totals: Counter = Counter()
    for rtype in sorted(summary):
        c = summary[rtype]
        totals.update(c)
        table.add_row(rtype, *(str(c[k]) for k in ("ok", "created", "updated", "unchanged", "failed")))
    table.add_row("[bold]total[/]", *(str(totals[k]) for k in ("ok", "created", "updated", "unchanged", "failed")))
    console.print(table)
    done = totals["ok"]
    console.print(f"{done} resources in {seconds:.1f} s ({done / max(seconds, 1e-6):,.0f} resources/s)")


def export_command(
    out: Path = typer.Argument(..., help="Folder for the NDJSON files (one per type)"),
    types: Optional[str] = typer.Option(None, "--type", help="Comma-separated resource types (_type)"),
    since: Optional[str] = typer.Option(None, "--since", help="Only resources changed after this instant"),
    type_filter: list[str] = typer.Option([], "--type-filter", help="[type]?[criteria] (_typeFilter), repeatable"),
    url: Optional[str] = typer.Option(None, "--url", help="Export from a running server ($export)"),
    database_url: Optional[str] = typer.Option(None, "--database-url", help="Export this database directly"),
    token: Optional[str] = typer.Option(None, "--token", envvar="IPT_FHIR_TOKEN", help="Bearer token for --url"),
) -> None:
    """Bulk Data export into NDJSON files, with a summary by type."""
    params = [("_type", types)] if types else []
    if since:
        params.append(("_since", since))
    params += [("_typeFilter", f) for f in type_filter]
    if out.exists() and not out.is_dir():
        console.print(f"[red]{out} is a file; export writes a folder of NDJSON files[/]")
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    counts: dict[str, int] = {}
    if url:
        import httpx

        headers = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with httpx.Client(timeout=600, headers=headers) as http:
            r = http.get(f"{url.rstrip('/')}/$export", params=params)
            if r.status_code != 202:
                console.print(f"[red]{r.status_code}: {_diagnostics(r)}[/]")
                raise typer.Exit(1)
            while (s := http.get(r.headers["content-location"])).status_code == 202:
                time.sleep(0.5)
            if s.status_code != 200:
                console.print(f"[red]{s.status_code}: {_diagnostics(s)}[/]")
                raise typer.Exit(1)
            for o in s.json()["output"]:
                (out / f"{o['type']}.ndjson").write_bytes(http.get(o["url"]).content)
                counts[o["type"]] = o["count"]
    else:
        from ipt_fhir.fhir.outcome import FHIRError
        from ipt_fhir.services.bulk_export import Exporter, parse_export_params
        from ipt_fhir.settings import get_settings
        from ipt_fhir.store.database import Database

        db_url = database_url or get_settings().database_url
        require_existing_sqlite(db_url)
        db = Database(db_url)
        try:
            req = parse_export_params("system", params)
            for o in Exporter(db).run(req, out):
                counts[o["type"]] = o["count"]
        except FHIRError as exc:
            console.print(f"[red]{exc.status}: {'; '.join(i.diagnostics for i in exc.issues)}[/]")
            raise typer.Exit(1) from None
        finally:
            db.dispose()
    table = Table(title=f"exported to {out}")
    table.add_column("type")
    table.add_column("resources", justify="right")
    for t in sorted(counts):
        table.add_row(t, str(counts[t]))
    table.add_row("[bold]total[/]", str(sum(counts.values())))
    console.print(table)
    console.print(f"in {time.perf_counter() - started:.1f} s")
