"""Ingest benchmark (issue 6 targets), each beside a raw-insert ceiling measured in the same run.

    .venv/bin/python -m benchmarks.ingest_bench [--bundles 20] [--postgres postgresql+psycopg://…/db]

1. Transactions: the Synthea transaction Bundles (../shared/fixtures/synthea/bundles) through
   BundleService.process (the code behind POST /fhir, without HTTP) into a fresh SQLite database, one
   thread. Ceiling: a plain executemany of the same resource rows (the JSON bytes) into the `resource`
   table of another fresh SQLite database.
2. $import: the 10-patient Synthea NDJSON through the Importer (the code behind $import and
   `ipt-fhir import`) into PostgreSQL (--postgres; the database is emptied first) and SQLite, after a
   warm-up import of the same files (compiled validators, started worker processes). Ceiling: a plain
   executemany of the same lines into `resource` in the same database.
"""
from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from ipt_fhir.fhir.jsonio import parse_json
from ipt_fhir.services.bulk_import import Importer, sources_from_paths
from ipt_fhir.services.bundle_processing import BundleService
from ipt_fhir.services.resources import ResourceService
from ipt_fhir.store import migrate
from ipt_fhir.store.database import Database
from ipt_fhir.store.tables import resource_table

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "synthea"


def _fresh_sqlite() -> str:
    url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    migrate.upgrade(url)
    return url


def _empty(url: str) -> None:
    migrate.upgrade(url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        tables = [r[0] for r in conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'")]
        conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    engine.dispose()


def _raw_ceiling(url: str, rows: list[tuple[str, str, bytes]]) -> float:
    """executemany of (type, id, bytes) into `resource` in one transaction; resources/s."""
    db = Database(url)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    with db.write() as conn:
        conn.execute(resource_table.insert(), [
            {"resource_type": t, "id": f"ceiling-{i}", "version_id": 1, "last_updated": now, "deleted": False,
             "content": c} for i, (t, _, c) in enumerate(rows)])
    seconds = time.perf_counter() - started
    db.dispose()
    return len(rows) / seconds


def bench_transactions(n_bundles: int) -> list[tuple[str, float, float]]:
    paths = sorted((FIXTURES / "bundles").glob("*.json.gz"))[:n_bundles]
    bodies = [gzip.decompress(p.read_bytes()) for p in paths]
    url = _fresh_sqlite()
    db = Database(url)
    service = BundleService(db, ResourceService(db))
    # warm-up: compile validators and index plans on one bundle in a throwaway database
    warm = Database(_fresh_sqlite())
    BundleService(warm, ResourceService(warm)).process(parse_json(bodies[0]), base_url="", prefer="minimal", strict_search=False)
    warm.dispose()
    count = 0
    started = time.perf_counter()
    for body in bodies:
        bundle = parse_json(body)
        count += len(bundle["entry"])
        service.process(bundle, base_url="", prefer="minimal", strict_search=False)
    rate = count / (time.perf_counter() - started)
    db.dispose()
    rows = []
    for body in bodies:
        for e in parse_json(body)["entry"]:
            from ipt_fhir.fhir.jsonio import dump_json

            rows.append((e["resource"]["resourceType"], e["resource"]["id"], dump_json(e["resource"])))
    ceiling = _raw_ceiling(_fresh_sqlite(), rows)
    return [(f"transaction ingest, SQLite, {len(bodies)} Synthea bundles ({count} resources)", rate, ceiling)]


def bench_import(url: str, label: str) -> tuple[str, float, float]:
    sources = [s for s in sources_from_paths([FIXTURES / "bulk-ndjson-10-patients"]) if not s.name.startswith("log")]
    if label == "PostgreSQL":
        _empty(url)
    db = Database(url)
    # warm-up: every type's validator and index plan compiled, and the worker processes started (a
    # server keeps them from one $import to the next; a CLI import pays ~1 s for them once)
    Importer(db, batch=1000).run(sources)
    if label == "PostgreSQL":
        _empty(url)
    else:
        db.dispose()
        url = _fresh_sqlite()
        db = Database(url)
    report = Importer(db, batch=1000).run(sources)
    rate = report.lines / report.seconds
    rerun = Importer(db, batch=1000).run(sources)
    rows = [("X", str(i), line.strip()) for s in sources for i, line in s.lines()]
    db.dispose()
    ceiling = _raw_ceiling(url, rows)
    return (f"$import, {label}, 10-patient NDJSON ({report.lines} lines; rerun unchanged "
            f"{rerun.lines / rerun.seconds:,.0f}/s)", rate, ceiling)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", type=int, default=20)
    parser.add_argument("--postgres", help="PostgreSQL URL for the $import benchmark (emptied first!)")
    args = parser.parse_args()
    results = bench_transactions(args.bundles)
    results.append(bench_import(_fresh_sqlite(), "SQLite"))
    if args.postgres:
        results.append(bench_import(args.postgres, "PostgreSQL"))
    width = max(len(r[0]) for r in results)
    print(f"{'what':<{width}}  {'resources/s':>12}  {'raw insert ceiling':>18}  {'share':>6}")
    for what, rate, ceiling in results:
        print(f"{what:<{width}}  {rate:>12,.0f}  {ceiling:>18,.0f}  {rate / ceiling:>6.1%}")


if __name__ == "__main__":
    main()
