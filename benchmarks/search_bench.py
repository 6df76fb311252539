"""Search benchmark (issue 4 target): 100k IPT care plans among ~2.9M resources, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/search_bench.py --url sqlite:////tmp/x/bench.db --courses 100000
    .venv/bin/python benchmarks/search_bench.py --url postgresql+psycopg://... --courses 100000

Data: the IPT demo-data generator (ipt_fhir.domain.demo_data.generate_courses), one course per patient
(Patient, 2-3 Conditions, 2-4 Goals, CarePlan, ServiceRequest, ~16 Encounters, PHQ-9 Observations:
~29 resources; the 8 Practitioners are shared). Generating and indexing a course in Python costs ~20 ms,
so 100k courses would take ~35 min; instead `--templates` distinct courses are generated, given ids
(urn:uuid references rewritten to Type/id, with a course-number placeholder in every id), stored and
indexed with the server's own code (`with_server_meta`, `dump_json`, `index_rows`) into template
tables, and then replicated inside the database with INSERT ... SELECT, substituting the course number
into ids, references and content (`replace()`), `courses / templates` times. Every replica is a
distinct patient with distinct resource ids; clinical content repeats per template.
The search-index secondary indexes (and the history indexes) are created after the bulk load.

Queries run through services.search.search (SQL + Bundle assembly, no HTTP) and, with --http, also
over HTTP: uvicorn serving the app in its own process (auth off), an httpx keep-alive client. Each
table has a ceiling: `Patient?_id=<one id>`, a primary-key search through the same path.

Measured 2026-11-22 on the shared 2-core machine (load average 5-9 from other work; p99s are noise-bound,
compare with the ceiling of the same run): 100k courses = 2,812,608 resources, 39.2M index rows.
SQLite 16.8 GB, loaded in 347 s; PostgreSQL 15 16 GB, loaded in 822 s (both mostly index builds).
search() p50/p99 ms: CarePlan?patient&category&status 0.43/4.9 (SQLite), 1.5-2.8/4-14 (PG);
+ _include=CarePlan:goal 0.5/4.9, 2.0-3.6/10-12; Encounter?patient&date&_sort=-date&_count=50
0.8/5.3, 2.9-3.0/9-10; ceiling 0.4/4.5, 0.7-0.8/1-9. Over HTTP (uvicorn) add ~1.5-3 ms at p50.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import time
from datetime import datetime, timezone

import sqlalchemy as sa

from ipt_fhir.domain.demo_data import generate_courses
from ipt_fhir.fhir.jsonio import dump_json, parse_json
from ipt_fhir.fhir.search.indexer import index_rows
from ipt_fhir.services.resources import with_server_meta
from ipt_fhir.services.search import search
from ipt_fhir.store import all_tables  # noqa: F401
from ipt_fhir.store.database import Database
from ipt_fhir.store.search_tables import INDEX_TABLES
from ipt_fhir.store.tables import history_table, metadata, resource_table

MARK = "~C~"  # replaced by the course number in every replica
MENTAL_HEALTH_PLAN = "http://snomed.info/sct|718347000"
_URN = re.compile(r"urn:uuid:[0-9a-f-]{36}")


def template_resources(templates: int, now: datetime) -> tuple[list[tuple[int, dict]], list[dict]]:
    """([(template no, stored resource with MARK in its ids)], shared practitioners)."""
    out: list[tuple[int, dict]] = []
    practitioners: dict[str, dict] = {}
    for t, bundle in enumerate(generate_courses(templates)):
        ids: dict[str, str] = {}
        for k, entry in enumerate(bundle["entry"]):
            res = entry["resource"]
            if res["resourceType"] == "Practitioner":
                npi = res["identifier"][0]["value"]
                ids[entry["fullUrl"]] = f"Practitioner/pr{npi}"
                practitioners.setdefault(npi, res)
            else:
                ids[entry["fullUrl"]] = f"{res['resourceType']}/{MARK}-{k}"
        text = dump_json(bundle).decode()
        bundle = parse_json(_URN.sub(lambda m: ids.get(m.group(0), m.group(0)), text))
        for k, entry in enumerate(bundle["entry"]):
            res = entry["resource"]
            if res["resourceType"] != "Practitioner":
                out.append((t, with_server_meta(res, f"{MARK}-{k}", 1, now)))
    shared = [with_server_meta(res, f"pr{npi}", 1, now) for npi, res in practitioners.items()]
    return out, shared


def _secondary_indexes() -> list[sa.Index]:
    tables = [*INDEX_TABLES.values(), history_table]
    return [ix for t in tables for ix in t.indexes if not ix.unique]


def _template_table(md: sa.MetaData, table: sa.Table) -> sa.Table:
    cols = [sa.Column(c.name, c.type) for c in table.columns if c.name != "seq"]
    return sa.Table(f"tmpl_{table.name}", md, sa.Column("tno", sa.Integer), *cols)


def load(db: Database, courses: int, templates: int) -> tuple[int, float, dict[str, float]]:
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    if db.dialect == "sqlite":
        # Bulk-load settings for this loader's connections only (the server's stay WAL/NORMAL): no
        # rollback journal, no fsync, a 1.5 GB page cache for the index builds.
        @sa.event.listens_for(db.engine, "connect")
        def _bulk(dbapi_conn, _record):  # noqa: ANN001, ANN202
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1500000"):
                dbapi_conn.execute(f"PRAGMA {pragma}")
        db.engine.dispose()
    now = datetime.now(timezone.utc)
    metadata.drop_all(db.engine)
    metadata.create_all(db.engine)
    secondary = _secondary_indexes()
    tmd = sa.MetaData()
    targets = [resource_table, history_table, *INDEX_TABLES.values()]
    tmpl = {t.name: _template_table(tmd, t) for t in targets}
    with db.engine.begin() as conn:
        for ix in secondary:
            conn.execute(sa.schema.DropIndex(ix))
    tmd.drop_all(db.engine)
    tmd.create_all(db.engine)

    resources, shared = template_resources(templates, now)
    timing["generate"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows: dict[str, list[dict]] = {name: [] for name in tmpl}
    for t, res in [(-1, r) for r in shared] + resources:
        rt, rid = res["resourceType"], res["id"]
        content = dump_json(res)
        rows["resource"].append({"tno": t, "resource_type": rt, "id": rid, "version_id": 1, "last_updated": now,
                                 "deleted": False, "content": content})
        rows["resource_history"].append({"tno": t, "resource_type": rt, "id": rid, "version_id": 1,
                                         "last_updated": now, "method": "POST", "content": content})
        for kind, kind_rows in index_rows(rt, res).items():
            table = INDEX_TABLES[kind]
            names = [c.name for c in table.columns]
            for row in dict.fromkeys(kind_rows):
                rows[table.name].append({"tno": t, **dict(zip(names, (rt, rid, *row)))})
    # Columns where the placeholder occurs get replace()d per replica; the others are copied.
    marked = {name: sorted({k for r in rs for k, v in r.items() if isinstance(v, str) and MARK in v})
              for name, rs in rows.items()}
    marked["resource"].append("content")
    marked["resource_history"].append("content")
    with db.engine.begin() as conn:
        for name, rs in rows.items():
            if rs:
                conn.execute(tmpl[name].insert(), rs)
        # shared resources (tno -1) once, as they are
        for target in targets:
            cols = [c.name for c in target.columns if c.name != "seq"]
            conn.execute(sa.insert(target).from_select(
                cols, sa.select(*[tmpl[target.name].c[c] for c in cols]).where(tmpl[target.name].c.tno == -1)))
    timing["index templates"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    reps = courses // templates
    pg = db.dialect == "postgresql"
    for rep in range(reps):
        with db.engine.begin() as conn:
            if pg:
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            for target in targets:
                src = tmpl[target.name]
                cols = [c.name for c in target.columns if c.name != "seq"]
                course = sa.cast(src.c.tno + rep * templates, sa.Text)
                exprs = []
                for c in cols:
                    col = src.c[c]
                    if c == "content":
                        text = sa.func.convert_from(col, "UTF8") if pg else sa.cast(col, sa.Text)
                        text = sa.func.replace(text, MARK, course)
                        exprs.append(sa.func.convert_to(text, "UTF8") if pg else sa.cast(text, sa.LargeBinary))
                    elif c in marked[target.name]:
                        exprs.append(sa.func.replace(col, MARK, course))
                    else:
                        exprs.append(col)
                conn.execute(sa.insert(target).from_select(cols, sa.select(*exprs).where(src.c.tno >= 0)))
        if rep % 10 == 0 or rep == reps - 1:
            print(f"  {(rep + 1) * templates} courses ({time.perf_counter() - t0:.0f}s)", flush=True)
    timing["replicate"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    with db.engine.begin() as conn:
        if pg:
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '1GB'")
        for ix in secondary:
            conn.execute(sa.schema.CreateIndex(ix))
    timing["create indexes"] = time.perf_counter() - t3
    tmd.drop_all(db.engine)
    t4 = time.perf_counter()
    if pg:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
    else:
        with db.engine.begin() as c:
            c.exec_driver_sql("ANALYZE")
    timing["analyze"] = time.perf_counter() - t4
    n = len(shared) + reps * len(resources)
    return n, time.perf_counter() - t0, timing


def timed(db: Database, rt: str, params_fn, n: int) -> list[float]:
    out = []
    for k in range(n):
        params = params_fn(k)
        t = time.perf_counter()
        search(db, rt, params, base_url="http://bench/fhir", request_url="http://bench/fhir/x")
        out.append((time.perf_counter() - t) * 1000)
    return out


def timed_http(client, rt: str, params_fn, n: int) -> list[float]:  # noqa: ANN001
    out = []
    for k in range(n):
        params = params_fn(k)
        t = time.perf_counter()
        r = client.get(f"/fhir/{rt}", params=params)
        r.raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_app():  # noqa: ANN201
    """The app with explicit settings (auth off), as the tests build it: the startup rule that refuses
    auth=off outside SQLite-on-localhost applies to settings read from the environment only."""
    from ipt_fhir.app import create_app
    from ipt_fhir.settings import Settings

    return create_app(Settings(database_url=os.environ["SEARCH_BENCH_URL"]))


def start_server(url: str):  # noqa: ANN201
    """uvicorn serving the app in its own process (bench_app, on 127.0.0.1), and a keep-alive httpx client."""
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "SEARCH_BENCH_URL": url}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "benchmarks.search_bench:bench_app",
                               "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
                               # as `ipt-fhir serve` runs it (observability.SERVER_OPTIONS)
                               "--no-date-header", "--no-proxy-headers",
                               "--http", "ipt_fhir.http_protocol:FhirHttpToolsProtocol"],
                              env=env)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    for _ in range(300):
        try:
            if client.get("/fhir/metadata").status_code == 200:
                return server, client
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("uvicorn did not start")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def size(db: Database) -> str:
    if db.dialect == "sqlite":
        path = db.url.split("///", 1)[1]
        total = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        return f"{total / 1e9:.1f} GB"
    with db.engine.connect() as conn:
        return conn.execute(sa.text("select pg_size_pretty(pg_database_size(current_database()))")).scalar_one()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--courses", type=int, default=100_000)
    ap.add_argument("--templates", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--http", action="store_true", help="also measure through the ASGI app")
    a = ap.parse_args()
    db = Database(a.url)
    if not a.skip_load:
        n, secs, timing = load(db, a.courses, a.templates)
        print(f"loaded {n} resources in {secs:.0f}s: " + ", ".join(f"{k} {v:.0f}s" for k, v in timing.items()))
        db.dispose()
        db = Database(a.url)  # the server's connection settings again (SQLite: WAL)
    with db.read() as conn:
        counts = dict(conn.execute(sa.select(resource_table.c.resource_type, sa.func.count())
                                   .group_by(resource_table.c.resource_type)).all())
        index_count = sum(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                          for t in INDEX_TABLES.values())
    courses = counts.get("Patient", 0)
    print(f"{db.dialect}: {sum(counts.values())} resources ({counts}), {index_count} index rows, size {size(db)}")
    rng = random.Random(7)
    pids = [f"{rng.randrange(courses)}-0" for _ in range(a.queries)]
    cases = {
        "ceiling Patient?_id=X": ("Patient", lambda k: [("_id", pids[k])]),
        "CarePlan?patient=X&category=Y&status=active": (
            "CarePlan", lambda k: [("patient", pids[k]), ("category", MENTAL_HEALTH_PLAN), ("status", "active")]),
        "  + _include=CarePlan:goal": (
            "CarePlan", lambda k: [("patient", pids[k]), ("category", MENTAL_HEALTH_PLAN), ("status", "active"),
                                   ("_include", "CarePlan:goal")]),
        "Encounter?patient=X&date=ge2025-01-01&_sort=-date&_count=50": (
            "Encounter", lambda k: [("patient", pids[k]), ("date", "ge2025-01-01"), ("_sort", "-date"),
                                    ("_count", "50")]),
        "Observation?patient=X&code=PHQ-9&_sort=date": (
            "Observation", lambda k: [("patient", pids[k]), ("code", "http://loinc.org|44261-6"), ("_sort", "date")]),
        "Patient?family=Nguyen&_count=20": ("Patient", lambda k: [("family", "Nguyen"), ("_count", "20")]),
    }
    runs = [("search()", lambda rt, fn, n: timed(db, rt, fn, n))]
    server = None
    if a.http:
        server, client = start_server(a.url)
        runs.append(("HTTP (uvicorn process, httpx keep-alive client)", lambda rt, fn, n: timed_http(client, rt, fn, n)))
    for label, run in runs:
        run("CarePlan", cases["CarePlan?patient=X&category=Y&status=active"][1], 30)  # warm-up
        print(f"\n{label}, {a.queries} queries each, distinct random patients")
        print(f"{'query':62s} {'p50 ms':>8s} {'p99 ms':>8s} {'p99/ceil':>8s}")
        ceiling = None
        for name, (rt, fn) in cases.items():
            xs = run(rt, fn, a.queries)
            p99 = pct(xs, 0.99)
            ceiling = ceiling or p99
            print(f"{name:62s} {statistics.median(xs):8.2f} {p99:8.2f} {p99 / ceiling:8.1f}")
    if server is not None:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
