"""Search benchmark: IPT care plans among many other resources, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/search_bench.py --url sqlite:////tmp/bench.db --patients 20000
    .venv/bin/python benchmarks/search_bench.py --url postgresql+psycopg://... --patients 20000

Per patient: 1 IPT CarePlan (+1 older completed one every 5th patient), 2 Goals, 6 Encounters, 8
Observations, 1 Condition -> ~19 resources, so --patients 100000 gives 100k care plans in ~2M
resources. Resources are written with the same write_index the server uses (one transaction per
batch). Queries run through services.search.search (SQL + Bundle assembly, no HTTP), with a ceiling:
the same query run with `_id=<one id>` (a primary-key lookup through the same code path).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.services.search import search
from ipt_fhir.store import all_tables  # noqa: F401
from ipt_fhir.store.database import Database
from ipt_fhir.store.search_index import write_index
from ipt_fhir.store.tables import metadata, resource_table

IPT = "http://ipt-fhir.org/fhir/CodeSystem/ipt-careplan-category"


def resources_for(i: int, rng: random.Random) -> list[dict]:
    pid = f"p{i}"
    subj = {"reference": f"Patient/{pid}"}
    out: list[dict] = [{"resourceType": "Patient", "id": pid, "name": [{"family": f"Fam{i % 997}", "given": [f"G{i}"]}],
                        "gender": rng.choice(["male", "female"]), "birthDate": f"{1940 + i % 60}-0{1 + i % 9}-1{i % 9}",
                        "identifier": [{"system": "urn:mrn", "value": f"MRN{i}"}]}]
    goals = []
    for g in range(2):
        gid = f"g{i}-{g}"
        goals.append({"reference": f"Goal/{gid}"})
        out.append({"resourceType": "Goal", "id": gid, "lifecycleStatus": "active", "subject": subj,
                    "description": {"text": f"Reduce PHQ-9 below {5 + g}"},
                    "target": [{"dueDate": "2025-06-01"}]})
    out.append({"resourceType": "Condition", "id": f"c{i}", "subject": subj,
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "35489007"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                          "code": "problem-list-item"}]}]})
    out.append({"resourceType": "CarePlan", "id": f"cp{i}", "status": "active", "intent": "plan", "subject": subj,
                "category": [{"coding": [{"system": IPT, "code": "ipt"}]},
                             {"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                                          "code": "assess-plan"}]}],
                "title": "Interpersonal psychotherapy", "period": {"start": "2025-01-10"}, "goal": goals,
                "addresses": [{"reference": f"Condition/c{i}"}],
                "activity": [{"detail": {"status": "scheduled", "kind": "Appointment",
                                         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "231507003"}]},
                                         "scheduledTiming": {"repeat": {"boundsPeriod": {"start": "2025-01-10", "end": "2025-04-10"}}}}}
                             for _ in range(12)]})
    if i % 5 == 0:
        out.append({"resourceType": "CarePlan", "id": f"cpold{i}", "status": "completed", "intent": "plan",
                    "subject": subj, "category": [{"coding": [{"system": IPT, "code": "ipt"}]}],
                    "period": {"start": "2023-01-01", "end": "2023-06-01"}})
    base = datetime(2024, 6, 1, tzinfo=timezone.utc)
    for e in range(6):
        start = base + timedelta(days=rng.randint(0, 400))
        out.append({"resourceType": "Encounter", "id": f"e{i}-{e}", "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": subj, "period": {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}})
    for o in range(8):
        when = base + timedelta(days=rng.randint(0, 400))
        out.append({"resourceType": "Observation", "id": f"o{i}-{o}", "status": "final", "subject": subj,
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                              "code": "survey"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                    "effectiveDateTime": when.isoformat(), "valueInteger": rng.randint(0, 27)})
    return out


def load(db: Database, patients: int, batch: int = 200) -> tuple[int, float]:
    rng = random.Random(42)
    now = datetime.now(timezone.utc)
    total = 0
    t0 = time.perf_counter()
    for start in range(0, patients, batch):
        with db.write() as conn:
            rows = []
            docs = []
            for i in range(start, min(start + batch, patients)):
                for res in resources_for(i, rng):
                    res["meta"] = {"versionId": "1", "lastUpdated": now.isoformat()}
                    rows.append({"resource_type": res["resourceType"], "id": res["id"], "version_id": 1,
                                 "last_updated": now, "deleted": False, "content": dump_json(res)})
                    docs.append(res)
            conn.execute(resource_table.insert(), rows)
            for res in docs:
                write_index(conn, res["resourceType"], res["id"], res, now)
            total += len(docs)
        if (start // batch) % 25 == 0:
            print(f"  loaded {total} resources ({time.perf_counter() - t0:.0f}s)", flush=True)
    return total, time.perf_counter() - t0


def timed(db: Database, rt: str, params_fn, n: int) -> list[float]:
    out = []
    for k in range(n):
        params = params_fn(k)
        t = time.perf_counter()
        search(db, rt, params, base_url="http://bench/fhir", request_url="http://bench/fhir/x")
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def size(db: Database) -> str:
    if db.dialect == "sqlite":
        path = db.url.split("///", 1)[1]
        total = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        return f"{total / 1e6:.0f} MB"
    with db.engine.connect() as conn:
        return conn.execute(sa.text("select pg_size_pretty(pg_database_size(current_database()))")).scalar_one()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--patients", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--skip-load", action="store_true")
    a = ap.parse_args()
    db = Database(a.url)
    if not a.skip_load:
        metadata.drop_all(db.engine)
        metadata.create_all(db.engine)
        n, secs = load(db, a.patients)
        print(f"loaded {n} resources in {secs:.0f}s ({secs / n * 1000:.2f} ms/resource incl. index)")
        if db.dialect == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE")
        else:
            with db.engine.begin() as c:
                c.exec_driver_sql("ANALYZE")
    with db.read() as conn:
        counts = dict(conn.execute(sa.select(resource_table.c.resource_type, sa.func.count())
                                   .group_by(resource_table.c.resource_type)).all())
    print(f"{db.dialect}: {sum(counts.values())} resources, {counts.get('CarePlan')} CarePlans, size {size(db)}")
    rng = random.Random(7)
    pids = [f"p{rng.randrange(a.patients)}" for _ in range(a.queries)]
    q = a.queries
    cases = {
        "ceiling CarePlan?_id=X": ("CarePlan", lambda k: [("_id", f"cp{pids[k][1:]}")]),
        "CarePlan?patient=X&category=ipt&status=active": (
            "CarePlan", lambda k: [("patient", pids[k]), ("category", f"{IPT}|ipt"), ("status", "active")]),
        "  + _include=CarePlan:goal": (
            "CarePlan", lambda k: [("patient", pids[k]), ("category", f"{IPT}|ipt"), ("status", "active"),
                                   ("_include", "CarePlan:goal")]),
        "Encounter?patient=X&date=ge2025-01-01&_sort=-date&_count=50": (
            "Encounter", lambda k: [("patient", pids[k]), ("date", "ge2025-01-01"), ("_sort", "-date"), ("_count", "50")]),
        "Observation?patient=X&code=44261-6&date=ge2025": (
            "Observation", lambda k: [("patient", pids[k]), ("code", "http://loinc.org|44261-6"), ("date", "ge2025")]),
        "Patient?family=Fam12&_count=20": ("Patient", lambda k: [("family", f"Fam{k % 997}"), ("_count", "20")]),
    }
    timed(db, "CarePlan", cases["CarePlan?patient=X&category=ipt&status=active"][1], 20)  # warm-up
    print(f"{'query':62s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, (rt, fn) in cases.items():
        xs = timed(db, rt, fn, q)
        print(f"{name:62s} {statistics.median(xs):8.2f} {pct(xs, 0.99):8.2f}")


if __name__ == "__main__":
    main()
