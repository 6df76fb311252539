"""`ipt-fhir demo-data`: deterministic synthetic IPT courses as transaction Bundles.

Either written to a folder (one JSON file per Bundle) or POSTed, one transaction per patient, to a
running server's FHIR base.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Optional

import orjson
import typer

from ipt_fhir.domain.demo_data import DEFAULT_AS_OF, generate_courses
from ipt_fhir.settings import get_settings


def demo_data(
    patients: int = typer.Option(..., "--patients", min=1, help="How many patients (one IPT course each)"),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same data"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write one transaction Bundle per patient into DIR"),
    url: Optional[str] = typer.Option(None, "--url", help="POST each transaction Bundle to this FHIR base"),
    as_of: str = typer.Option(DEFAULT_AS_OF.isoformat(), "--as-of",
                              help="The 'today' of the generated courses (YYYY-MM-DD)"),
    canonical_base: Optional[str] = typer.Option(
        None, "--canonical-base", help="Canonical base of the IPT profiles (default IPT_FHIR_CANONICAL_BASE)"),
    token: Optional[str] = typer.Option(None, "--token", envvar="IPT_FHIR_DEMO_TOKEN",
                                        help="Bearer token for --url, if the server requires one"),
) -> None:
    """Generate synthetic IPT courses (Patient, Practitioner, Conditions, Goals, CarePlan, course,
    sessions, PHQ-9 scores) that pass every IPT profile and rule."""
    if (out is None) == (url is None):
        raise typer.BadParameter("give exactly one of --out DIR or --url BASE")
    try:
        today = date.fromisoformat(as_of)
    except ValueError:
        raise typer.BadParameter(f"--as-of must be a date (YYYY-MM-DD), not {as_of!r}") from None
    base = canonical_base or get_settings().canonical_base
    bundles = generate_courses(patients, seed, base, as_of=today)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        width = max(4, len(str(patients)))
        for i, bundle in enumerate(bundles):
            (out / f"ipt-course-{i:0{width}d}.json").write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
        typer.echo(f"wrote {patients} transaction Bundles to {out}")
        return
    _post_all(bundles, url.rstrip("/"), token, patients)


def _post_all(bundles, base: str, token: str | None, total: int) -> None:  # noqa: ANN001
    import httpx

    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json",
               "Prefer": "return=minimal"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(timeout=120) as client:
        for i, bundle in enumerate(bundles):
            response = client.post(base, content=orjson.dumps(bundle), headers=headers)
            if response.status_code >= 300:
                typer.echo(f"Bundle {i} failed with HTTP {response.status_code}:\n{response.text[:2000]}", err=True)
                raise typer.Exit(code=1)
    typer.echo(f"posted {total} transaction Bundles to {base}")
